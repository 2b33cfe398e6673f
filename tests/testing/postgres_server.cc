#include "tests/testing/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace caseway::testing {
namespace {

namespace fs = std::filesystem;

std::string FindBinDir() {
  if (const char* env = std::getenv("CASEWAY_PG_BINDIR"); env != nullptr && *env != '\0') {
    return env;
  }
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int version = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &version)) continue;
    if (version > best_version && fs::exists(entry.path() / "bin" / "initdb")) {
      best_version = version;
      best = (entry.path() / "bin").string();
    }
  }
  return best;
}

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> server(new PostgresServer());
  server->bindir_ = FindBinDir();
  if (server->bindir_.empty()) {
    return absl::FailedPreconditionError(
        "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb, or $CASEWAY_PG_BINDIR):"
        " install Debian's postgresql package (deploy/install-deps.sh --test does)");
  }
  char tmpl[] = "/tmp/caseway-pg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  server->dir_ = tmpl;
  if (geteuid() == 0) {
    const passwd* nobody = getpwnam("nobody");
    if (nobody == nullptr) return absl::FailedPreconditionError("no user 'nobody' to run as");
    server->switch_user_ = true;
    server->run_uid_ = nobody->pw_uid;
    server->run_gid_ = nobody->pw_gid;
    if (chown(tmpl, server->run_uid_, server->run_gid_) != 0) {
      return absl::InternalError(absl::StrCat("chown ", tmpl, " failed"));
    }
  }
  chmod(tmpl, 0700);
  if (absl::Status s = server->InitDb(); !s.ok()) return s;
  // A port found free can be taken before the server binds it: try a few.
  absl::Status started;
  for (int attempt = 0; attempt < 5; ++attempt) {
    started = server->StartPostmaster();
    if (started.ok()) return server;
  }
  return started;
}

// Spawn runs `argv` in `dir_` as the server's user, its output to `log` (appended), and returns
// its pid. With `tied`, it dies with this process (SIGQUIT: the postmaster's immediate shutdown).
pid_t PostgresServer::Spawn(const std::vector<std::string>& argv, const std::string& log,
                            bool tied) {
  const pid_t parent = getpid();
  pid_t child = fork();
  if (child != 0) return child;
  if (switch_user_ &&
      (setgroups(0, nullptr) != 0 || setgid(run_gid_) != 0 || setuid(run_uid_) != 0)) {
    _exit(126);
  }
  if (tied) {
    prctl(PR_SET_PDEATHSIG, SIGQUIT);  // after setuid, which clears it
    if (getppid() != parent) _exit(1);
  }
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  if (chdir(dir_.c_str()) != 0) _exit(126);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execv(args[0], args.data());
  _exit(127);
}

absl::Status PostgresServer::InitDb() {
  const std::string log = dir_ + "/initdb.log";
  pid_t child = Spawn({bindir_ + "/initdb", "-D", dir_ + "/data", "-U", "caseway", "-A", "trust",
                       "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"},
                      log, /*tied=*/false);
  if (child < 0) return absl::InternalError("fork failed");
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("initdb failed: ", ReadFile(log)));
  }
  return absl::OkStatus();
}

absl::Status PostgresServer::StartPostmaster() {
  port_ = FreeLoopbackPort();
  if (port_ == 0) return absl::InternalError("no free loopback port");
  const std::string log = dir_ + "/postgres.log";
  // A test process that dies (a crash, a timeout's SIGKILL) takes its server with it.
  pid_t child = Spawn({bindir_ + "/postgres", "-D", dir_ + "/data", "-p", std::to_string(port_),
                       "-k", dir_, "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=60",
                       "-c", "shared_buffers=32MB", "-c", "fsync=on", "-c",
                       "synchronous_commit=on"},
                      log, /*tied=*/true);
  if (child < 0) return absl::InternalError("fork failed");
  pid_ = child;
  const std::string dsn = Dsn();
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      return absl::InternalError(absl::StrCat("postgres exited at start: ", ReadFile(log)));
    }
    if (PQping(dsn.c_str()) == PQPING_OK) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Stop().IgnoreError();
  return absl::DeadlineExceededError(
      absl::StrCat("postgres did not accept connections within 30 s: ", ReadFile(log)));
}

absl::Status PostgresServer::Stop() {
  if (pid_ == 0) return absl::OkStatus();
  kill(pid_, SIGINT);  // fast shutdown: ends open connections, then a clean checkpoint
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  int status = 0;
  while (absl::Now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = 0;
  return absl::DeadlineExceededError("postgres did not stop within 30 s; killed");
}

PostgresServer::~PostgresServer() {
  Stop().IgnoreError();
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

std::string PostgresServer::Dsn(const std::string& database) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=caseway dbname=", database,
                      " connect_timeout=5");
}

absl::Status PostgresServer::CreateDatabase(const std::string& name) {
  return PgQuery(Dsn("postgres"), absl::StrCat("CREATE DATABASE \"", name, "\"")).status();
}

absl::StatusOr<std::vector<std::string>> PgQuery(const std::string& dsn, const std::string& sql) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  PGresult* r = PQexec(conn, sql.c_str());
  absl::StatusOr<std::vector<std::string>> out = std::vector<std::string>();
  const ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_TUPLES_OK) {
    constexpr Oid kByteaOid = 17;
    for (int i = 0; i < PQntuples(r); ++i) {
      const char* v = PQgetvalue(r, i, 0);
      if (PQftype(r, 0) != kByteaOid) {
        out->emplace_back(v, PQgetlength(r, i, 0));
        continue;
      }
      size_t n = 0;
      unsigned char* bytes = PQunescapeBytea(reinterpret_cast<const unsigned char*>(v), &n);
      out->emplace_back(reinterpret_cast<const char*>(bytes), bytes != nullptr ? n : 0);
      PQfreemem(bytes);
    }
  } else if (st != PGRES_COMMAND_OK) {
    out = absl::InternalError(PQerrorMessage(conn));
  }
  PQclear(r);
  PQfinish(conn);
  return out;
}

absl::StatusOr<std::string> NewPostgresDatabase(const std::string& prefix) {
  PostgresServer* server = SharedPostgres();
  if (server == nullptr) return absl::UnavailableError("no PostgreSQL test server");
  static std::atomic<int> databases{0};
  const std::string name = absl::StrCat(prefix, "_", ++databases);
  if (absl::Status s = server->CreateDatabase(name); !s.ok()) return s;
  return server->Dsn(name);
}

PostgresServer* SharedPostgres() {
  static std::unique_ptr<PostgresServer> server = [] {
    auto started = PostgresServer::Start();
    if (!started.ok()) {
      ADD_FAILURE() << "PostgreSQL test server: " << started.status();
      return std::unique_ptr<PostgresServer>();
    }
    return std::move(*started);
  }();
  return server.get();
}

}  // namespace caseway::testing
