#include "tests/testing/harness.h"

#include "caseway/v1/exchange_log.pb.h"
#include "common/signing.h"
#include "common/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <filesystem>
#include <mutex>
#include <set>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/testing/postgres_server.h"
#include "absl/time/clock.h"

namespace caseway::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(base ? base : "/tmp", "/caseway-test-XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) abort();
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (::testing::Test::HasFailure()) {
    fprintf(stderr, "test files kept in %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string BinDir() {
  const char* d = getenv("CASEWAY_BIN_DIR");
  return d ? d : CASEWAY_DEFAULT_BIN_DIR;
}

std::string SourceDir() {
  const char* d = getenv("CASEWAY_SOURCE_DIR");
  return d ? d : CASEWAY_DEFAULT_SOURCE_DIR;
}

namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

RunResult RunCommand(const std::vector<std::string>& argv, const std::string& input,
              absl::Duration timeout) {
  static int counter = 0;
  std::string base = absl::StrCat("/tmp/caseway-run-", getpid(), "-", counter++);
  std::string in_path = base + ".in", out_path = base + ".out", err_path = base + ".err";
  {
    std::ofstream in(in_path, std::ios::binary);
    in << input;
  }
  pid_t pid = fork();
  if (pid == 0) {
    int in = open(in_path.c_str(), O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  RunResult r;
  absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  for (;;) {
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.err = "timed out";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadAll(out_path);
  r.err += ReadAll(err_path);
  unlink(in_path.c_str());
  unlink(out_path.c_str());
  unlink(err_path.c_str());
  return r;
}

Pki::Pki(const std::string& dir, const std::string& federation)
    : dir_(dir), federation_(federation) {
  RunResult r = RunCommand({"/bin/bash", SourceDir() + "/deploy/pki.sh", "init", dir_, federation_});
  if (r.exit_code != 0) ADD_FAILURE() << "pki.sh init failed: " << r.err;
}

std::string Pki::Node(const std::string& j) {
  std::string prefix = absl::StrCat(dir_, "/nodes/", j);
  if (!fs::exists(prefix + ".crt")) {
    RunResult r = RunCommand({"/bin/bash", SourceDir() + "/deploy/pki.sh", "node", dir_, j});
    if (r.exit_code != 0) ADD_FAILURE() << "pki.sh node failed: " << r.err;
  }
  return prefix;
}

std::string Pki::Client(const std::string& j, const std::string& name) {
  std::string prefix = absl::StrCat(dir_, "/clients/", j, "-", name);
  if (!fs::exists(prefix + ".crt")) {
    RunResult r = RunCommand({"/bin/bash", SourceDir() + "/deploy/pki.sh", "client", dir_, j, name});
    if (r.exit_code != 0) ADD_FAILURE() << "pki.sh client failed: " << r.err;
  }
  return prefix;
}

std::string Pki::Department(const std::string& j, const std::string& name) {
  std::string prefix = absl::StrCat(dir_, "/departments/", j, "-", name);
  if (!fs::exists(prefix + ".crt")) {
    RunResult r =
        RunCommand({"/bin/bash", SourceDir() + "/deploy/pki.sh", "department", dir_, j, name});
    if (r.exit_code != 0) ADD_FAILURE() << "pki.sh department failed: " << r.err;
  }
  return prefix;
}

std::string Pki::Auditor(const std::string& name) {
  std::string prefix = absl::StrCat(dir_, "/auditors/", name);
  if (!fs::exists(prefix + ".crt")) {
    RunResult r = RunCommand({"/bin/bash", SourceDir() + "/deploy/pki.sh", "auditor", dir_, name});
    if (r.exit_code != 0) ADD_FAILURE() << "pki.sh auditor failed: " << r.err;
  }
  return prefix;
}

absl::StatusOr<std::pair<int, std::string>> HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("nothing listens on 127.0.0.1:", port));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("request not sent");
  }
  std::string response;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) response.append(buf, n);
  close(fd);
  const size_t head_end = response.find("\r\n\r\n");
  int code = 0;
  if (head_end == std::string::npos || sscanf(response.c_str(), "HTTP/%*s %d", &code) != 1) {
    return absl::DataLossError(absl::StrCat("not an HTTP response: ", response.substr(0, 200)));
  }
  return std::make_pair(code, response.substr(head_end + 4));
}

namespace {

// The lowest port of the kernel's ephemeral range (what outgoing connections take), 0 if unknown.
int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0, high = 0;
  in >> low >> high;
  return in ? low : 0;
}

// Bindable reports whether `port` on 127.0.0.1 is free now (without SO_REUSEADDR).
bool Bindable(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

int FreePort() {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  // Never hand out the same port twice in one process.
  static std::set<int>* const given = new std::set<int>();
  // Below the ephemeral range: there, no outgoing connection's source port takes the port between
  // the test choosing it and the node binding it. (Above, a subscriber dialing a node that does
  // not listen yet could even be connected to itself on it, TCP's simultaneous open, and the node
  // then finds its port taken: seen once.) Each process walks its own stretch, picked by its pid,
  // so that tests running side by side rarely meet; each port is checked free when handed out.
  constexpr int kFirst = 10000;
  static const int low = EphemeralLow();
  if (low - kFirst >= 1000) {
    const int span = low - kFirst;
    static int next = kFirst + static_cast<int>((static_cast<int64_t>(getpid()) * 64) % span);
    for (int tries = 0; tries < span; ++tries) {
      const int port = next;
      next = next + 1 >= low ? kFirst : next + 1;
      if (given->count(port) == 0 && Bindable(port)) {
        given->insert(port);
        return port;
      }
    }
  }
  // No room below the ephemeral range: the kernel picks.
  for (;;) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    int port = ntohs(addr.sin_port);
    if (given->insert(port).second) return port;
  }
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

NodeProcess::NodeProcess(Pki* pki, std::string dir, std::string jurisdiction)
    : pki_(pki), dir_(std::move(dir)), jurisdiction_(std::move(jurisdiction)),
      port_(FreePort()) {
  pki_->Node(jurisdiction_);
}

NodeProcess::~NodeProcess() { Kill(); }

void NodeProcess::AddPeer(const NodeProcess& peer, bool serve_only) {
  peers_.push_back({peer.jurisdiction(), peer.address(), serve_only});
}

std::string NodeProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

void NodeProcess::WriteConfig() {
  // CASEWAY_TEST_STORE=postgres runs every node of the test on PostgreSQL (a database of its own
  // on the test process's server): the integration tests as a conformance run of that backend.
  if (postgres_dsn_.empty() && TestStoreIsPostgres()) {
    if (auto dsn = NewPostgresDatabase("node_" + jurisdiction_); dsn.ok()) set_postgres(*dsn, "6s");
  }
  // The Pki issues this node's files unless the test brought all of its own.
  const bool own = !tls_cert_.empty() && !sign_key_.empty();
  std::string cert = own ? "" : pki_->Node(jurisdiction_);
  std::ofstream out(config_path(), std::ios::trunc);
  out << "federation: " << pki_->federation() << "\n"
      << "jurisdiction: \"" << jurisdiction_ << "\"\n"
      << "listen_address: " << address() << "\n"
      << "port_file: " << dir_ << "/" << jurisdiction_ << ".port\n"
      << "tls:\n  ca_file: " << pki_->ca()
      << "\n  cert_file: " << (tls_cert_.empty() ? cert + ".crt" : tls_cert_)
      << "\n  key_file: " << (tls_key_.empty() ? cert + ".key" : tls_key_) << "\n" << tls_yaml_
      << "storage:\n"
      << (postgres_dsn_.empty() ? "  path: " + db_path() + "\n"
                                : "  postgres:\n    dsn: \"" + postgres_dsn_ +
                                      "\"\n    lease_ttl: " + lease_ttl_ + "\n")
      << storage_yaml_
      << "exchange:\n  heartbeat_interval: 200ms\n  backoff_initial: 50ms\n  backoff_max: 500ms\n"
      << exchange_yaml_
      << "exchange_log:\n  signing_key_file: "
      << (sign_key_.empty() ? cert + ".sign.key" : sign_key_) << "\n  directory_file: "
      << (directory_.empty() ? pki_->dir() + "/directory.yaml" : directory_)
      << "\n  checkpoint_interval: 200ms\n"
      << "  witness_interval: 300ms\n" << exchange_log_yaml_ << "log:\n  level: debug\n";
  if (!peers_.empty()) {
    out << "peers:\n";
    for (const auto& p : peers_) {
      out << "  - jurisdiction: \"" << p.jurisdiction << "\"\n";
      if (p.serve_only) {
        out << "    serve_only: true\n";
      } else {
        out << "    address: " << p.address << "\n";
      }
    }
  }
  out << extra_yaml_ << "\n";
}

void NodeProcess::SetClockOffset(absl::Duration offset) {
  test_clock_ = true;
  const std::string tmp = clock_path() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << absl::ToInt64Seconds(offset) << "\n";
  }
  std::rename(tmp.c_str(), clock_path().c_str());
  // A running node looks at the file at most every 10 ms (common/test_clock.cc): wait that out,
  // so that whatever the test does next sees the moved clock.
  if (pid_ > 0) absl::SleepFor(absl::Milliseconds(25));
}

absl::Status NodeProcess::Start() {
  Launch();
  return WaitListening(absl::Seconds(20));
}

void NodeProcess::Launch() {
  observer_.reset();
  auditor_.reset();
  WriteConfig();
  std::string port_file = absl::StrCat(dir_, "/", jurisdiction_, ".port");
  unlink(port_file.c_str());
  // Fault injection exists only in the test build of the node (common/fault.h).
  const bool test_build = (env_.rfind("CASEWAY_FAULTS=", 0) == 0 || test_clock_) && !production_binary_;
  std::string binary = BinDir() + (test_build ? "/caseway-node-faults" : "/caseway-node");
  std::string clock_env = "CASEWAY_TEST_CLOCK=" + clock_path();
  std::string config = config_path();
  std::string log = log_path();
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    if (!env_.empty()) putenv(const_cast<char*>(env_.c_str()));
    for (std::string& e : more_env_) putenv(e.data());
    if (test_clock_) putenv(clock_env.data());
    execl(binary.c_str(), binary.c_str(), "--config", config.c_str(), nullptr);
    _exit(127);
  }
}

absl::Status NodeProcess::WaitListening(absl::Duration timeout) {
  const std::string port_file = absl::StrCat(dir_, "/", jurisdiction_, ".port");
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (fs::exists(port_file)) return absl::OkStatus();
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("caseway-node ", jurisdiction_,
                                              " exited with status ", WEXITSTATUS(status), ": ",
                                              this->log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill();
  return absl::DeadlineExceededError(
      absl::StrCat("caseway-node did not start listening within ", absl::FormatDuration(timeout)));
}

void NodeProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int NodeProcess::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  kill(pid_, SIGCONT);  // a node a test froze (and did not thaw) takes its SIGTERM too
  int status = 0;
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (waitpid(pid_, &status, WNOHANG) != pid_) {
    if (absl::Now() > deadline) {
      Kill();
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string NodeProcess::log() const { return ReadAll(log_path()); }

std::unique_ptr<client::Client> NodeProcess::NewClient(const std::string& name) {
  std::string prefix = pki_->Client(jurisdiction_, name);
  client::ConnectionOptions o;
  o.address = address();
  o.ca_file = pki_->ca();
  o.cert_file = prefix + ".crt";
  o.key_file = prefix + ".key";
  o.purpose = kTestPurpose;
  auto c = client::Client::Connect(o);
  if (!c.ok()) {
    ADD_FAILURE() << c.status();
    return nullptr;
  }
  return std::move(*c);
}

std::vector<std::string> NodeProcess::CliFlags(const std::string& name) {
  std::string prefix = pki_->Client(jurisdiction_, name);
  return {"--address", address(), "--ca", pki_->ca(), "--cert", prefix + ".crt",
          "--key", prefix + ".key", "--purpose", kTestPurpose};
}

bool TestStoreIsPostgres() {
  const char* store = std::getenv("CASEWAY_TEST_STORE");
  return store != nullptr && std::string(store) == "postgres";
}

std::string NodeProcess::Bytes(const std::string& hex) const {
  return on_postgres() ? absl::StrCat("decode('", hex, "', 'hex')") : absl::StrCat("x'", hex, "'");
}

int64_t NodeProcess::Observed(
    const std::function<int64_t(const caseway::v1::StatusResponse&)>& pick) {
  if (pid_ <= 0) {
    ADD_FAILURE() << jurisdiction_ << " is not running: its Status cannot be asked";
    return -1;
  }
  if (observer_ == nullptr) observer_ = NewClient("observer");
  if (observer_ == nullptr) return -1;  // NewClient failed the test, saying why
  auto status = observer_->Status();
  if (!status.ok()) {
    ADD_FAILURE() << jurisdiction_ << ": Status: " << status.status();
    return -1;
  }
  return pick(*status);
}

int64_t NodeProcess::InboxTotal() {
  return Observed([](const v1::StatusResponse& s) { return static_cast<int64_t>(s.inbox_total()); });
}

int64_t NodeProcess::InboxUnacked() {
  return Observed(
      [](const v1::StatusResponse& s) { return static_cast<int64_t>(s.inbox_unacked()); });
}

namespace {

// ChannelTo is the channel to `destination` in `s` (an empty one, head and acked 0, when none).
const v1::StatusResponse::Channel& ChannelTo(const v1::StatusResponse& s,
                                             const std::string& destination) {
  for (const auto& c : s.channels()) {
    if (c.destination() == destination) return c;
  }
  return v1::StatusResponse::Channel::default_instance();
}

}  // namespace

int64_t NodeProcess::Acked(const std::string& destination) {
  return Observed([&](const v1::StatusResponse& s) {
    return static_cast<int64_t>(ChannelTo(s, destination).acked());
  });
}

int64_t NodeProcess::Head(const std::string& destination) {
  return Observed([&](const v1::StatusResponse& s) {
    return static_cast<int64_t>(ChannelTo(s, destination).head());
  });
}

int64_t NodeProcess::Unreceipted() {
  return Observed([](const v1::StatusResponse& s) {
    int64_t n = 0;
    for (const auto& c : s.channels()) n += static_cast<int64_t>(c.head() - c.acked());
    return n;
  });
}

int64_t NodeProcess::Cursor(const std::string& origin) {
  return Observed([&](const v1::StatusResponse& s) {
    for (const auto& sub : s.subscriptions()) {
      if (sub.origin() == origin) return static_cast<int64_t>(sub.cursor());
    }
    ADD_FAILURE() << jurisdiction_ << " has no subscription to " << origin;
    return int64_t{-1};
  });
}

v1::ExchangeLog::Stub* NodeProcess::Auditor() {
  if (pid_ <= 0) {
    ADD_FAILURE() << jurisdiction_ << " is not running: its exchange log cannot be asked "
                  << "(a stopped node's store: Inspect)";
    return nullptr;
  }
  if (auditor_ != nullptr) return auditor_.get();
  const std::string prefix = pki_->Auditor("observer");
  auto creds = common::ChannelCredentials(
      common::TlsFiles{pki_->ca(), prefix + ".crt", prefix + ".key"});
  if (!creds.ok()) {
    ADD_FAILURE() << creds.status();
    return nullptr;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auditor_ = v1::ExchangeLog::NewStub(grpc::CreateCustomChannel(address(), *creds, args));
  return auditor_.get();
}

grpc::Status NodeProcess::AskLog(const std::function<grpc::Status(grpc::ClientContext*)>& call) {
  if (Auditor() == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no auditor channel");
  }
  bool first = true;
  return client::CallIdempotent([&](grpc::ClientContext* ctx) {
    // The first try's deadline; the repeats have CallIdempotent's budget.
    if (first) ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    first = false;
    return call(ctx);
  });
}

std::vector<std::string> NodeProcess::LogBytes() {
  std::vector<std::string> entries;
  for (;;) {
    v1::GetEntriesRequest req;
    req.set_start(entries.size());
    req.set_end(entries.size() + 1000);
    v1::GetEntriesResponse resp;
    grpc::Status s = AskLog([&](grpc::ClientContext* ctx) {
      resp.Clear();
      return Auditor()->GetEntries(ctx, req, &resp);
    });
    if (s.error_code() == grpc::StatusCode::OUT_OF_RANGE) return entries;  // past the last
    if (!s.ok() || resp.entries_size() == 0) {
      ADD_FAILURE() << jurisdiction_ << ": GetEntries from " << req.start() << ": "
                    << s.error_message();
      return entries;
    }
    for (auto& e : *resp.mutable_entries()) entries.push_back(std::move(e));
  }
}

std::vector<v1::LogEntry> NodeProcess::LogEntries() {
  std::vector<v1::LogEntry> parsed;
  for (const std::string& bytes : LogBytes()) {
    parsed.emplace_back();
    if (!parsed.back().ParseFromString(bytes)) {
      ADD_FAILURE() << jurisdiction_ << ": log entry " << parsed.size() - 1 << " does not parse";
    }
  }
  return parsed;
}

int64_t NodeProcess::Published() {
  int64_t n = 0;
  for (const auto& e : LogEntries()) n += e.kind() == v1::LogEntry::KIND_PUBLISHED;
  return n;
}

std::optional<v1::CheckpointResponse> NodeProcess::Checkpoint(int64_t size,
                                                              const std::string& cosigner) {
  if (Auditor() == nullptr) return std::nullopt;
  v1::GetCheckpointRequest req;
  req.set_size(size);
  req.set_cosigner(cosigner);
  v1::CheckpointResponse resp;
  grpc::Status s = AskLog([&](grpc::ClientContext* ctx) {
    resp.Clear();
    return Auditor()->GetCheckpoint(ctx, req, &resp);
  });
  if (s.error_code() == grpc::StatusCode::NOT_FOUND && size == 0) return std::nullopt;  // none yet
  if (!s.ok()) {
    ADD_FAILURE() << jurisdiction_ << ": GetCheckpoint: " << s.error_message();
    return std::nullopt;
  }
  return resp;
}

int64_t NodeProcess::CheckpointSize() {
  auto c = Checkpoint(0, "");
  return c ? static_cast<int64_t>(c->size()) : 0;
}

int NodeProcess::Cosigners(const std::string& witness, int64_t size) {
  auto c = Checkpoint(size, 
      witness.empty() ? "" : absl::StrCat(pki_->federation(), "/node/", witness));
  if (!c) return 0;
  auto note = common::ParseNote(c->note());
  if (!note.ok()) {
    ADD_FAILURE() << jurisdiction_ << ": checkpoint note: " << note.status();
    return -1;
  }
  return static_cast<int>(note->signatures.size()) - 1;  // the node's own signature first
}

int64_t NodeProcess::WitnessedSize(const std::string& peer) {
  int64_t size = 0;
  for (const auto& e : LogEntries()) {
    if (e.kind() == v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED && e.peer() == peer) {
      size = std::max<int64_t>(size, e.last_seq());
    }
  }
  return size;
}

std::vector<v1::Evidence> NodeProcess::Evidence(v1::Evidence::Kind kind, const std::string& peer) {
  v1::GetEvidenceRequest req;
  switch (kind) {
    case v1::Evidence::KIND_MANIFEST_SENT:
    case v1::Evidence::KIND_RECEIPT_RECEIVED:
      req.set_direction(v1::GetEvidenceRequest::DIRECTION_OUTBOUND);
      break;
    case v1::Evidence::KIND_MANIFEST_RECEIVED:
    case v1::Evidence::KIND_RECEIPT_SENT:
      req.set_direction(v1::GetEvidenceRequest::DIRECTION_INBOUND);
      break;
    case v1::Evidence::KIND_QUERY_ANSWER_RECEIVED:
      req.set_direction(v1::GetEvidenceRequest::DIRECTION_QUERIES);
      break;
    case v1::Evidence::KIND_SHARING_POLICY:
      req.set_direction(v1::GetEvidenceRequest::DIRECTION_SHARING_POLICIES);
      break;
    case v1::Evidence::KIND_QUERY_ANSWER_SENT:
      req.set_direction(v1::GetEvidenceRequest::DIRECTION_ANSWERS_SENT);
      break;
    default:
      ADD_FAILURE() << "no direction serves evidence of kind " << kind;
      return {};
  }
  req.set_peer(peer);
  req.set_purpose(kTestPurpose);
  std::vector<v1::Evidence> out;
  do {
    v1::GetEvidenceResponse resp;
    grpc::Status s = AskLog([&](grpc::ClientContext* ctx) {
      resp.Clear();
      return Auditor()->GetEvidence(ctx, req, &resp);
    });
    if (!s.ok()) {
      ADD_FAILURE() << jurisdiction_ << ": GetEvidence: " << s.error_message();
      return out;
    }
    for (auto& e : *resp.mutable_evidence()) {
      if (e.kind() == kind) out.push_back(std::move(e));
    }
    req.set_after(resp.next());
  } while (req.after() != 0);
  return out;
}

std::vector<v1::InboxItem> NodeProcess::InboxItems() {
  std::vector<v1::InboxItem> items;
  if (pid_ <= 0) {
    ADD_FAILURE() << jurisdiction_ << " is not running: its inbox cannot be read";
    return items;
  }
  if (observer_ == nullptr) observer_ = NewClient("observer");
  if (observer_ == nullptr) return items;
  absl::Status s = observer_->Inbox(client::InboxOptions{}, [&](const v1::InboxItem& item) {
    items.push_back(item);
    return true;
  });
  if (!s.ok()) ADD_FAILURE() << jurisdiction_ << ": Inbox: " << s;
  return items;
}

NodeProcess::StoreSummary NodeProcess::Inspect() {
  StoreSummary summary;
  if (!fs::exists(config_path())) WriteConfig();  // a node never started has none yet
  RunResult r = RunCommand({BinDir() + "/caseway-node", "inspect", "--config", config_path(), "--json"});
  google::protobuf::Struct out;
  if (r.exit_code != 0 || !google::protobuf::util::JsonStringToMessage(r.out, &out).ok()) {
    ADD_FAILURE() << jurisdiction_ << ": caseway-node inspect: exit " << r.exit_code << "\n"
                  << r.out << r.err;
    return summary;
  }
  const auto& f = out.fields();
  auto number = [&](const std::string& key) {
    auto it = f.find(key);
    return it == f.end() ? int64_t{-1} : static_cast<int64_t>(it->second.number_value());
  };
  summary.backup_mark = f.count("backup_taken_at") > 0;
  summary.notices_published = number("notices_published");
  summary.log_entries = number("log_entries");
  summary.checkpoint_size = number("checkpoint_size");
  summary.inbox_total = number("inbox_total");
  summary.inbox_unacked = number("inbox_unacked");
  if (auto it = f.find("channels"); it != f.end()) {
    for (const auto& [destination, c] : it->second.struct_value().fields()) {
      const auto& cf = c.struct_value().fields();
      summary.channels[destination] = {
          static_cast<int64_t>(cf.count("head") ? cf.at("head").number_value() : -1),
          static_cast<int64_t>(cf.count("acked") ? cf.at("acked").number_value() : -1)};
    }
  }
  if (auto it = f.find("cursors"); it != f.end()) {
    for (const auto& [origin, seq] : it->second.struct_value().fields()) {
      summary.cursors[origin] = static_cast<int64_t>(seq.number_value());
    }
  }
  if (auto it = f.find("reads"); it != f.end()) {
    for (const auto& [what, n] : it->second.struct_value().fields()) {
      summary.reads[what] = static_cast<int64_t>(n.number_value());
    }
  }
  return summary;
}

int64_t NodeProcess::Count(const std::string& sql) const {
  if (!postgres_dsn_.empty()) {
    auto rows = PgQuery(postgres_dsn_, sql);
    if (!rows.ok() || rows->empty()) {
      ADD_FAILURE() << "query failed: " << sql << ": " << rows.status();
      return -1;
    }
    return std::strtoll(rows->front().c_str(), nullptr, 10);
  }
  sqlite3* db = nullptr;
  int64_t value = -1;
  if (sqlite3_open_v2(db_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      value = sqlite3_column_int64(stmt, 0);
    } else {
      ADD_FAILURE() << "query failed: " << sql << ": " << sqlite3_errmsg(db);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return value;
}

void NodeProcess::Exec(const std::string& sql) const {
  if (!postgres_dsn_.empty()) {
    auto done = PgQuery(postgres_dsn_, sql);
    EXPECT_TRUE(done.ok()) << sql << ": " << done.status();
    return;
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << sql << ": " << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

std::vector<std::string> NodeProcess::Blobs(const std::string& sql) const {
  std::vector<std::string> out;
  if (!postgres_dsn_.empty()) {
    auto rows = PgQuery(postgres_dsn_, sql);
    if (!rows.ok()) ADD_FAILURE() << "query failed: " << sql << ": " << rows.status();
    return rows.ok() ? *rows : out;
  }
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK) {
      while (sqlite3_step(stmt) == SQLITE_ROW) {
        out.emplace_back(static_cast<const char*>(sqlite3_column_blob(stmt, 0)),
                         sqlite3_column_bytes(stmt, 0));
      }
    } else {
      ADD_FAILURE() << "query failed: " << sql << ": " << sqlite3_errmsg(db);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return out;
}

absl::Status NodeProcess::Freeze(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("the node is not running");
  if (kill(pid_, SIGSTOP) != 0) return absl::ErrnoToStatus(errno, "kill(SIGSTOP)");
  // The parent hears of a stop (WUNTRACED) once the whole thread group has stopped.
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WUNTRACED | WNOHANG);
    if (r == pid_ && WIFSTOPPED(status)) return absl::OkStatus();
    if (r == pid_) {
      pid_ = -1;
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return absl::InternalError(absl::StrCat("the node ended (", exit_status_, ") instead of stopping"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the node's threads did not all stop within ", absl::FormatDuration(timeout)));
}

absl::Status NodeProcess::Thaw() {
  if (pid_ <= 0) return absl::FailedPreconditionError("the node is not running");
  if (kill(pid_, SIGCONT) != 0) return absl::ErrnoToStatus(errno, "kill(SIGCONT)");
  return absl::OkStatus();
}

bool NodeProcess::Exited() {
  if (pid_ <= 0) return true;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }
  return false;
}

v1::Notice SampleNotice(const std::string& notice_id, const std::vector<std::string>& dests) {
  v1::Notice n;
  n.set_notice_id(notice_id);
  n.set_case_id("case-" + notice_id);
  v1::Subject* s = n.mutable_subject();
  s->set_name("测试人");
  s->set_id_number("11010519491231002X");
  s->set_sex(v1::SEX_FEMALE);
  s->mutable_birth_date()->set_year(1992);
  s->mutable_birth_date()->set_month(5);
  s->mutable_birth_date()->set_day(17);
  s->set_registered_region("360102");
  for (const auto& d : dests) n.add_destinations(d);
  n.mutable_occurred_at()->set_seconds(1'790'000'000);
  n.set_priority(v1::PRIORITY_NORMAL);
  auto* rc = n.mutable_residence_change();
  rc->set_direction(v1::ResidenceChange::DIRECTION_DEPARTURE);
  rc->mutable_effective_date()->set_year(2026);
  rc->mutable_effective_date()->set_month(9);
  rc->mutable_effective_date()->set_day(1);
  rc->set_residence_region(dests.empty() ? "440305" : dests[0]);
  return n;
}

std::string ToJsonLine(const google::protobuf::Message& message) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out);
  return out;
}

std::vector<std::string> AuditCommand(const Pki& pki, const std::string& auditor,
                                      const std::string& dir, std::vector<std::string> args) {
  std::vector<std::string> argv = {BinDir() + "/caseway", "audit"};
  argv.insert(argv.end(), args.begin(), args.end());
  for (const std::string& f : std::vector<std::string>{
           "--directory", pki.dir() + "/directory.yaml", "--ca", pki.ca(), "--cert",
           auditor + ".crt", "--key", auditor + ".key", "--state-dir", dir + "/state",
           "--bundle-dir", dir + "/bundles"}) {
    argv.push_back(f);
  }
  return argv;
}

int64_t DistinctNotices(const std::vector<v1::InboxItem>& items) {
  std::set<std::pair<std::string, std::string>> ids;
  for (const auto& item : items) ids.emplace(item.origin(), item.notice().notice_id());
  return static_cast<int64_t>(ids.size());
}

int64_t EventsSize(NodeProcess& n) {
  int64_t size = 0, i = 0;
  for (const auto& e : n.LogEntries()) {
    ++i;
    if (e.kind() != v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED) size = i;
  }
  return size;
}

}  // namespace caseway::testing
