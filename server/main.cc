// caseway-node: runs one jurisdiction's node. Wiring only; see server/node.h.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/synchronization/mutex.h"
#include "common/config.h"
#include "common/log.h"
#include "common/policy.h"
#include "common/tls.h"
#include "server/node.h"
#include "server/store/backup.h"
#include "server/store/inspect.h"
#include "server/store/postgres.h"
#include "server/store/sqlite.h"
#include "server/store/reseal.h"
#include "server/store/sealer.h"
#include "server/store/writer_lease.h"
#ifdef CASEWAY_TEST_FAULTS
#include "common/test_clock.h"
#endif

namespace {

constexpr char kUsage[] = R"(caseway-node: a Caseway node (one jurisdiction's gateway).

Usage:
  caseway-node --config node.yaml      run the node until SIGTERM or SIGINT
  caseway-node --config node.yaml --check
                                       validate the configuration and open, as this user, every
                                       file it names (CA, certificate and key and that they match,
                                       signing key, directory, CRLs; storage writable), then exit
  caseway-node backup --config node.yaml --to FILE
                                       copy the node's database to FILE (which must not exist) as
                                       one consistent snapshot, while the node runs, and mark it
                                       as a backup; prints what it holds
  caseway-node restore --config node.yaml --from FILE
                                       with the node stopped: put the backup FILE in place of the
                                       database (the current files are kept beside it, renamed
                                       .replaced-<time>). At its next start the node asks every
                                       peer what it holds of it, and refuses to start from a copy
                                       older than what they saw (docs/operator.md, "Backup and
                                       restore")
  caseway-node add-key --to FILE      add a new random key to the storage key file FILE (created,
                                       mode 0600, if missing) and print its id. The last key in
                                       the file seals from the node's next start; every key in it
                                       opens (docs/operator.md, "Encryption at rest")
  caseway-node reseal --config node.yaml
                                       with the node stopped: rewrite every body that is in the
                                       clear or sealed with an older key under the current key of
                                       storage.key_file, then rebuild the file (on PostgreSQL: the
                                       tables, holding the writer lease meanwhile) so no old copy
                                       is left; afterwards older keys may be removed from the file
  caseway-node inspect --config node.yaml [--json]
                                       print what the node's store holds (notices published,
                                       exchange log and latest checkpoint, channels, cursors,
                                       inbox, a backup's mark), read-only, whether the node runs
                                       or not, on either backend; counts only, no personal data
                                       (docs/operator.md, "Inspecting a store")
  caseway-node --help | --version

The configuration is YAML mapped onto caseway.v1.NodeConfig (see docs/configuration.md). The same
checks run before every start. With storage.postgres the node may be one of an active/standby
pair: it waits as the standby, listening nowhere, until it holds the writer lease (docs/operator.md,
"Active/standby on PostgreSQL"). Exit status: 0 after a clean shutdown, 2 for a bad command line,
configuration or file (the message names the field and the path), 75 after a storage fault (on
PostgreSQL also a lost connection: restart it), 76 when the writer lease was lost (restart it: it
comes back as the standby), 1 otherwise.
)";

int WritePortFile(const std::string& path, int port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out) return 1;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0 ? 0 : 1;
}

// RunStorageCommand runs `caseway-node backup` or `caseway-node restore`.
int RunStorageCommand(const std::string& command, const caseway::v1::NodeConfig& config,
                      const std::string& file) {
  if (config.storage().has_postgres()) {
    fprintf(stderr,
            "caseway-node %s: the store is in PostgreSQL (storage.postgres): back it up and restore "
            "it with PostgreSQL's own tools (pg_dump, pg_basebackup; docs/operator.md)\n",
            command.c_str());
    return 2;
  }
  const std::string flag = command == "backup" ? "--to" : "--from";
  if (file.empty()) {
    fprintf(stderr, "caseway-node %s: %s FILE is required\n\n%s", command.c_str(), flag.c_str(), kUsage);
    return 2;
  }
  const std::string& db = config.storage().path();
  if (command == "backup") {
    auto summary = caseway::server::BackupDatabase(db, file);
    if (!summary.ok()) {
      fprintf(stderr, "caseway-node backup: %s\n", std::string(summary.status().message()).c_str());
      return summary.status().code() == absl::StatusCode::kInternal ? 1 : 2;
    }
    printf("backup of %s (%s) taken at %s: %s, %llu bytes\n", config.jurisdiction().c_str(),
           db.c_str(),
           absl::FormatTime(absl::RFC3339_sec, summary->taken_at, absl::UTCTimeZone()).c_str(),
           file.c_str(), static_cast<unsigned long long>(summary->bytes));
    printf("  exchange log: %llu entries\n", static_cast<unsigned long long>(summary->log_size));
    for (const auto& [dest, head] : summary->channel_heads) {
      printf("  channel to %s: up to seq %llu\n", dest.c_str(), static_cast<unsigned long long>(head));
    }
    for (const auto& [origin, seq] : summary->cursors) {
      printf("  received from %s: up to seq %llu\n", origin.c_str(), static_cast<unsigned long long>(seq));
    }
    return 0;
  }
  auto taken = caseway::server::RestoreDatabase(file, db);
  if (!taken.ok()) {
    fprintf(stderr, "caseway-node restore: %s\n", std::string(taken.status().message()).c_str());
    return taken.status().code() == absl::StatusCode::kInternal ? 1 : 2;
  }
  printf("restored the backup taken at %s into %s; at its next start the node asks every peer "
         "what it holds of it before exchanging anything\n",
         absl::FormatTime(absl::RFC3339_sec, *taken, absl::UTCTimeZone()).c_str(), db.c_str());
  return 0;
}

// RunInspect runs `caseway-node inspect --config node.yaml [--json]`.
int RunInspect(const caseway::v1::NodeConfig& config, bool json) {
  using caseway::server::Db;
  absl::StatusOr<std::unique_ptr<Db>> db;
  std::string where;
  if (config.storage().has_postgres()) {
    where = "postgres";
    auto pg = caseway::server::PgDb::Connect(config.storage().postgres().dsn());
    if (pg.ok()) db = std::move(*pg); else db = pg.status();
  } else {
    const std::string& path = config.storage().path();
    where = "sqlite: " + path;
    if (struct stat st; stat(path.c_str(), &st) != 0) {
      fprintf(stderr, "caseway-node inspect: storage.path: %s does not exist\n", path.c_str());
      return 2;
    }
    auto file = caseway::server::SqliteDb::OpenReadOnly(path);
    if (file.ok()) db = std::move(*file); else db = file.status();
  }
  absl::StatusOr<caseway::server::StoreSummary> summary =
      db.ok() ? caseway::server::InspectStore(db->get()) : db.status();
  if (!summary.ok()) {
    fprintf(stderr, "caseway-node inspect: %s\n", std::string(summary.status().message()).c_str());
    return summary.status().code() == absl::StatusCode::kFailedPrecondition ? 2 : 1;
  }
  if (json) {
    printf("%s\n", caseway::server::StoreSummaryJson(*summary).c_str());
    return 0;
  }
  auto n = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  printf("store of %s (%s), schema version %d\n", config.jurisdiction().c_str(), where.c_str(),
         summary->schema_version);
  if (summary->backup_taken_at) {
    printf("  a backup taken at %s, not started on since: its first start asks every peer what "
           "it holds of it\n",
           absl::FormatTime(absl::RFC3339_sec, *summary->backup_taken_at, absl::UTCTimeZone()).c_str());
  }
  printf("  notices published here: %llu\n", n(summary->notices_published));
  printf("  exchange log: %llu entries, latest checkpoint at %llu\n", n(summary->log_entries),
         n(summary->checkpoint_size));
  for (const auto& [destination, c] : summary->channels) {
    printf("  channel to %s: up to seq %llu, acknowledged up to %llu\n", destination.c_str(),
           n(c.head), n(c.acked));
  }
  for (const auto& [origin, seq] : summary->cursors) {
    printf("  received from %s: up to seq %llu\n", origin.c_str(), n(seq));
  }
  printf("  inbox: %llu notices, %llu not yet taken by the local consumer\n",
         n(summary->inbox_total), n(summary->inbox_unacked));
  std::string reads;
  for (const auto& [what, count] : summary->reads) {
    absl::StrAppend(&reads, reads.empty() ? "" : ", ", what, " ", count);
  }
  printf("  reads of personal data recorded: %s\n", reads.empty() ? "none" : reads.c_str());
  return 0;
}

// RunAddKey runs `caseway-node add-key --to FILE`.
int RunAddKey(const std::string& file) {
  if (file.empty()) {
    fprintf(stderr, "caseway-node add-key: --to FILE is required\n\n%s", kUsage);
    return 2;
  }
  auto id = caseway::server::Sealer::AddKey(file);
  if (!id.ok()) {
    fprintf(stderr, "caseway-node add-key: %s\n", std::string(id.status().message()).c_str());
    return id.status().code() == absl::StatusCode::kInternal ? 1 : 2;
  }
  printf("key %u added to %s: it seals from the node's next start. Keep a copy of the file "
         "offline; after `caseway-node reseal`, older keys may be removed from it\n", *id,
         file.c_str());
  return 0;
}

// RunReseal runs `caseway-node reseal --config node.yaml`.
int RunReseal(const caseway::v1::NodeConfig& config) {
  if (config.storage().key_file().empty()) {
    fprintf(stderr, "caseway-node reseal: storage.key_file is not set in the configuration\n");
    return 2;
  }
  auto sealer = caseway::server::Sealer::Load(config.storage().key_file());
  if (!sealer.ok()) {
    fprintf(stderr, "caseway-node reseal: %s\n", std::string(sealer.status().message()).c_str());
    return 2;
  }
  const bool postgres = config.storage().has_postgres();
  auto counts = postgres
                    ? caseway::server::ResealPostgres(config.storage().postgres().dsn(), **sealer)
                    : caseway::server::ResealDatabase(config.storage().path(), **sealer);
  if (!counts.ok()) {
    fprintf(stderr, "caseway-node reseal: %s\n", std::string(counts.status().message()).c_str());
    return counts.status().code() == absl::StatusCode::kFailedPrecondition ? 2 : 1;
  }
  printf("%s: sealed with key %u: %llu bodies that were in the clear, %llu sealed with older "
         "keys; %llu were already; only key %u is needed now\n",
         postgres ? "storage.postgres" : config.storage().path().c_str(), (*sealer)->current_key(),
         static_cast<unsigned long long>(counts->was_plain),
         static_cast<unsigned long long>(counts->was_older_key),
         static_cast<unsigned long long>(counts->already_current), (*sealer)->current_key());
  return 0;
}

}  // namespace

int Main(int argc, char** argv) {
  // Lock-order checking costs on every Mutex operation; the test suite runs with it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Everything the node creates (database, WAL, shared memory, port file), whenever it creates
  // it, is for its own user only: the store holds personal data.
  umask(0077);
#ifdef CASEWAY_TEST_FAULTS
  caseway::common::InstallTestClockFromEnv();  // test build only (common/test_clock.h)
#endif
  std::string config_path;
  bool check_only = false;
  std::string command;  // "", "backup", "restore", "add-key", "reseal" or "inspect"
  bool json = false;     // inspect --json
  std::string file;     // --to / --from
  int first = 1;
  if (argc > 1) {
    const std::string first_arg = argv[1];
    if (first_arg == "backup" || first_arg == "restore" || first_arg == "add-key" ||
        first_arg == "reseal" || first_arg == "inspect") {
      command = first_arg;
      first = 2;
    }
  }
  const char* file_flag = command == "restore" ? "--from" : "--to";
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (command == "inspect" && arg == "--json") {
      json = true;
      continue;
    }
    if (!command.empty() && command != "reseal" && command != "inspect" && arg == file_flag &&
        i + 1 < argc) {
      file = argv[++i];
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--version") {
      puts("caseway-node 0.1.0");
      return 0;
    } else if (arg == "--check") {
      check_only = true;
    } else if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else {
      fprintf(stderr, "caseway-node: unknown argument %s\n\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (command == "add-key") return RunAddKey(file);
  if (config_path.empty()) {
    fprintf(stderr, "caseway-node: --config is required\n\n%s", kUsage);
    return 2;
  }
  auto config = caseway::common::LoadNodeConfig(config_path);
  if (!config.ok()) {
    fprintf(stderr, "caseway-node: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (command == "reseal") return RunReseal(*config);
  if (command == "inspect") return RunInspect(*config, json);
  if (!command.empty()) return RunStorageCommand(command, *config, file);
  caseway::common::ConfigureLog(caseway::common::ParseLogLevel(config->log().level()),
                                config->log().format() == caseway::v1::LogConfig::FORMAT_JSON);
  if (!config->policy_file().empty()) {
    if (auto policy = caseway::common::Policy::Load(config->policy_file()); !policy.ok()) {
      fprintf(stderr, "caseway-node: policy_file: %s\n", std::string(policy.status().message()).c_str());
      return 2;
    }
  }
  // Everything the node would open, opened as this user: a file it cannot read, or a key that is
  // not its certificate's, is exit status 2 (a configuration error: systemd does not restart it),
  // with or without --check.
  if (absl::Status s = caseway::server::Node::Check(*config); !s.ok()) {
    fprintf(stderr, "caseway-node: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (check_only) {
    printf("%s: configuration is valid; every file it names can be read by this user\n",
           config_path.c_str());
    return 0;
  }

  // Every peer stream and client call holds a socket: a hub serving thousands of nodes needs more
  // than the usual soft limit of 1,024 descriptors. Raise it to the hard limit the system allows.
  if (struct rlimit files; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // On PostgreSQL the node may be one of an active/standby pair: it starts serving once it holds
  // the writer lease, and waits for it (a standby, listening nowhere) while another node does.
  std::unique_ptr<caseway::server::WriterLease> lease;
  if (config->storage().has_postgres()) {
    caseway::server::LeaseOptions lease_options;
    lease_options.dsn = config->storage().postgres().dsn();
    lease_options.holder = caseway::server::LeaseHolderName();
    lease_options.ttl = absl::Milliseconds(google::protobuf::util::TimeUtil::DurationToMilliseconds(
        config->storage().postgres().lease_ttl()));
    std::string reported;
    absl::Time reported_at = absl::InfinitePast();
    auto acquired = caseway::server::WriterLease::Acquire(
        lease_options,
        [&](const caseway::server::WriterLease::Wait& w) {
          // Once per holder (or error), and again every minute while it stays.
          const std::string now = w.error.ok() ? w.holder : w.error.ToString();
          if (now == reported && absl::Now() - reported_at < absl::Minutes(1)) return;
          reported = now;
          reported_at = absl::Now();
          if (!w.error.ok()) {
            caseway::common::Log(caseway::common::LogLevel::kWarn,
                                 "standby: the database cannot be asked for the writer lease "
                                 "(retried)",
                                 {{"status", w.error.ToString()}});
            return;
          }
          caseway::common::Log(caseway::common::LogLevel::kInfo,
                               "standby: another node of this jurisdiction holds the writer lease",
                               {{"holder", w.holder},
                                {"seconds_left", absl::StrCat(static_cast<int64_t>(w.seconds_left))}});
        },
        [&](absl::Duration poll) {
          const timespec wait = absl::ToTimespec(poll);
          return sigtimedwait(&signals, nullptr, &wait) < 0;  // a stop signal ends the wait
        });
    if (!acquired.ok()) {
      caseway::common::Log(caseway::common::LogLevel::kInfo, "stopped while standby", {});
      return 0;
    }
    lease = std::move(*acquired);
    caseway::common::Log(caseway::common::LogLevel::kInfo,
                         "active: this node holds the writer lease",
                         {{"holder", lease->holder()}, {"epoch", absl::StrCat(lease->epoch())}});
  }
  auto node = caseway::server::Node::Start(*config, std::move(lease));
  if (!node.ok()) {
    caseway::common::Log(caseway::common::LogLevel::kError, "node failed to start",
                         {{"status", node.status().ToString()}});
    return node.status().code() == absl::StatusCode::kFailedPrecondition ? 2 : 1;
  }
  if (!config->port_file().empty() && WritePortFile(config->port_file(), (*node)->port()) != 0) {
    caseway::common::Log(caseway::common::LogLevel::kError, "cannot write port_file",
                         {{"path", config->port_file()}});
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  caseway::common::Log(caseway::common::LogLevel::kInfo, "signal received",
                       {{"signal", strsignal(sig)}});
  (*node)->Shutdown();
  return 0;
}

// No exception escapes (docs/errors.md): one that reaches here is a bug, reported as such.
int main(int argc, char** argv) {
  caseway::common::KeepOpenSslAtExit();
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    fprintf(stderr, "caseway-node: internal error: %s\n", e.what());
  } catch (...) {
    fprintf(stderr, "caseway-node: internal error: unknown exception\n");
  }
  return 1;
}
