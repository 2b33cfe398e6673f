// PostgresServer: a throw-away PostgreSQL server for tests, from Debian's postgresql package.
#ifndef CASEWAY_TESTS_TESTING_POSTGRES_SERVER_H_
#define CASEWAY_TESTS_TESTING_POSTGRES_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace caseway::testing {

// PostgresServer runs initdb and postgres in a new temporary directory, listening on 127.0.0.1
// on a free port (and a Unix socket in that directory), with trust authentication for the
// superuser "caseway". When this process is root the server runs as the unprivileged user
// "nobody" (initdb refuses root), which then owns the directory.
//
// The binaries come from $CASEWAY_PG_BINDIR, else the newest /usr/lib/postgresql/*/bin.
// FAILED_PRECONDITION, naming the package, when there are none (deploy/install-deps.sh --test
// installs them).
//
// Lifetime: the destructor stops the server (fast shutdown; SIGKILL of the postmaster it started
// if that fails) and removes the directory. Thread-compatible.
class PostgresServer {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // A libpq connection string for `database` on the loopback address.
  std::string Dsn(const std::string& database = "postgres") const;
  // CreateDatabase makes a new, empty database.
  absl::Status CreateDatabase(const std::string& name);

  int port() const { return port_; }
  // Stop shuts the server down (fast: open connections are ended).
  absl::Status Stop();

 private:
  PostgresServer() = default;
  absl::Status InitDb();
  pid_t Spawn(const std::vector<std::string>& argv, const std::string& log, bool tied);
  absl::Status StartPostmaster();

  std::string bindir_;
  std::string dir_;  // data in dir_/data, the socket and log beside it
  int port_ = 0;
  pid_t pid_ = 0;
  uid_t run_uid_ = 0;  // the user the server runs as (nobody under root)
  gid_t run_gid_ = 0;
  bool switch_user_ = false;
};

// SharedPostgres is one server for the whole test process, started on first use and stopped at
// exit (nullptr, with a test failure, when it cannot start). Each test makes its own database.
PostgresServer* SharedPostgres();
// PgQuery runs one SQL command on `dsn` and returns the first column of each row it returns
// (bytea decoded); INTERNAL with the server's message when it fails.
absl::StatusOr<std::vector<std::string>> PgQuery(const std::string& dsn, const std::string& sql);

// NewPostgresDatabase makes a new database named `prefix`_N on the shared server and returns its
// connection string.
absl::StatusOr<std::string> NewPostgresDatabase(const std::string& prefix);

}  // namespace caseway::testing

#endif  // CASEWAY_TESTS_TESTING_POSTGRES_SERVER_H_
