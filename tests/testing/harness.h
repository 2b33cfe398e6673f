// Integration-test harness: a temporary federation PKI made by deploy/pki.sh, real caseway-node
// processes on 127.0.0.1 ports, the real `caseway` CLI, and the nodes observed through their RPCs
// and `caseway-node inspect` (docs/testing.md, "Observing a node").
#ifndef CASEWAY_TESTS_TESTING_HARNESS_H_
#define CASEWAY_TESTS_TESTING_HARNESS_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "caseway/client/client.h"
#include "caseway/v1/exchange_log.grpc.pb.h"
#include "caseway/v1/notice.pb.h"

namespace caseway::testing {

// The purpose the tests give for reads of personal data (docs/privacy.md).
inline constexpr char kTestPurpose[] = "caseway test suite";

// TempDir is a directory removed (recursively) on destruction unless the test failed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// BinDir and SourceDir come from the environment ctest sets (CASEWAY_BIN_DIR, CASEWAY_SOURCE_DIR).
std::string BinDir();
std::string SourceDir();

// RunResult is a finished command.
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// RunCommand executes argv[0] with arguments, feeding `input` on stdin; waits at most `timeout`.
RunResult RunCommand(const std::vector<std::string>& argv, const std::string& input = "",
              absl::Duration timeout = absl::Seconds(120));

// Pki is a federation CA with certificates issued on demand by deploy/pki.sh.
class Pki {
 public:
  Pki(const std::string& dir, const std::string& federation);
  const std::string& dir() const { return dir_; }
  const std::string& federation() const { return federation_; }
  std::string ca() const { return dir_ + "/ca.crt"; }
  // Node, Client, Department and Auditor issue (once) and return the path prefix of .crt/.key.
  std::string Node(const std::string& jurisdiction);
  std::string Client(const std::string& jurisdiction, const std::string& name);
  std::string Department(const std::string& jurisdiction, const std::string& name);
  std::string Auditor(const std::string& name);

 private:
  std::string dir_;
  std::string federation_;
};

// FreePort returns a port on 127.0.0.1 that was free a moment ago, below the kernel's ephemeral
// range where it has room (harness.cc says why), never the same twice in one process.
int FreePort();

// TestStoreIsPostgres is true when CASEWAY_TEST_STORE=postgres puts every node of the test on
// PostgreSQL. A test of what only a SQLite file has (its permissions, the bytes in it, backup,
// restore, reseal, disk faults) skips itself then.
bool TestStoreIsPostgres();

// HttpGet fetches http://127.0.0.1:<port><path> (HTTP/1.0) and returns the status code and body;
// UNAVAILABLE when nothing answers.
absl::StatusOr<std::pair<int, std::string>> HttpGet(int port, const std::string& path);

// NodeProcess is one caseway-node child process with its own config and database.
class NodeProcess {
 public:
  NodeProcess(Pki* pki, std::string dir, std::string jurisdiction);
  ~NodeProcess();  // SIGKILL if still running

  // AddPeer configures a subscription to `peer` (call before Start).
  // AddPeer makes `peer` a peer of this node; a serve_only peer is served but not subscribed to.
  void AddPeer(const NodeProcess& peer, bool serve_only = false);
  // AddPeerAt peers with `jurisdiction` dialed at `address` (e.g. through a LoopbackProxy).
  void AddPeerAt(const std::string& jurisdiction, const std::string& address) {
    peers_.push_back({jurisdiction, address, false});
  }
  // extra_yaml is appended to the generated configuration (e.g. "exchange:\n  window_batches: 2").
  void set_extra_yaml(std::string yaml) { extra_yaml_ = std::move(yaml); }
  // exchange_yaml adds settings under `exchange:` (e.g. "  window_batches: 2\n").
  void set_exchange_yaml(std::string yaml) { exchange_yaml_ = std::move(yaml); }
  // exchange_log_yaml adds settings under `exchange_log:` (e.g. "  scrub_rate: 0\n").
  void set_exchange_log_yaml(std::string yaml) { exchange_log_yaml_ = std::move(yaml); }
  // storage_yaml adds settings under `storage:` (e.g. "  retention: 720h\n").
  void set_storage_yaml(std::string yaml) { storage_yaml_ = std::move(yaml); }
  // tls_yaml adds settings under `tls:` (e.g. "  crl_dir: /path\n").
  void set_tls_yaml(std::string yaml) { tls_yaml_ = std::move(yaml); }
  // set_tls_files uses these certificate and key files instead of the ones Pki::Node issues
  // (e.g. behind a symlink that a test switches to renew them).
  void set_tls_files(std::string cert, std::string key) {
    tls_cert_ = std::move(cert);
    tls_key_ = std::move(key);
  }
  // set_signing_files uses this signing key and federation directory instead of the Pki's.
  void set_signing_files(std::string sign_key, std::string directory) {
    sign_key_ = std::move(sign_key);
    directory_ = std::move(directory);
  }
  // env adds "NAME=value" to the node's environment. CASEWAY_FAULTS=... (fault injection) runs
  // the test build `caseway-node-faults` instead of `caseway-node`, unless use_production_binary.
  void set_env(std::string assignment) { env_ = std::move(assignment); }
  // add_env adds another NAME=value to the node's environment (e.g. LD_PRELOAD).
  void add_env(std::string assignment) { more_env_.push_back(std::move(assignment)); }
  void use_production_binary() { production_binary_ = true; }
  // SetClockOffset moves the node's clock (common::Now) to the real time plus `offset`, now or,
  // before Start, from the start: it runs the test build of the node with CASEWAY_TEST_CLOCK
  // (common/test_clock.h). The node sees the change within about 10 ms.
  void SetClockOffset(absl::Duration offset);
  std::string clock_path() const { return dir_ + "/" + jurisdiction_ + ".clock"; }

  // Start launches the process and waits until it listens (its port file appears).
  absl::Status Start();
  // Launch starts the process without waiting (a standby listens only once it takes over);
  // WaitListening then waits for its port file, failing when the process exits first.
  void Launch();
  absl::Status WaitListening(absl::Duration timeout);
  // set_postgres keeps the node's store in the PostgreSQL database `dsn` (storage.postgres)
  // instead of a SQLite file, with the writer lease's TTL `lease_ttl`; Count, Exec and Blobs then
  // query that database.
  void set_postgres(std::string dsn, std::string lease_ttl = "2s") {
    postgres_dsn_ = std::move(dsn);
    lease_ttl_ = std::move(lease_ttl);
  }
  // WriteConfig writes the configuration Start would use, to config_path().
  void WriteConfig();
  // Kill sends SIGKILL and reaps; Stop sends SIGTERM and waits for a clean exit (returns status).
  void Kill();
  int Stop();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  const std::string& jurisdiction() const { return jurisdiction_; }
  std::string address() const;
  int port() const { return port_; }
  std::string db_path() const {
    return db_path_.empty() ? dir_ + "/" + jurisdiction_ + ".db" : db_path_;
  }
  // set_db_path stores the node's database elsewhere (e.g. in a directory the node creates).
  void set_db_path(std::string path) { db_path_ = std::move(path); }
  std::string config_path() const { return dir_ + "/" + jurisdiction_ + ".yaml"; }
  std::string log_path() const { return dir_ + "/" + jurisdiction_ + ".log"; }
  std::string log() const;

  // A client of this node's own jurisdiction, and its CLI connection flags.
  std::unique_ptr<caseway::client::Client> NewClient(const std::string& name = "office");
  std::vector<std::string> CliFlags(const std::string& name = "office");

  // What a running node's Status RPC reports now, asked as a client ("observer") of its own
  // jurisdiction: how the tests observe its inbox, channels and cursors, on either backend. Each
  // fails the test (and returns -1) when the node cannot be asked. A channel not yet opened has
  // head and acked 0.
  int64_t InboxTotal();
  int64_t InboxUnacked();
  int64_t Acked(const std::string& destination);
  int64_t Head(const std::string& destination);
  int64_t Cursor(const std::string& origin);
  // Unreceipted is the number of notices, over every outbound channel, the destination has not
  // acknowledged yet (head - acked).
  int64_t Unreceipted();

  // The node's exchange log and evidence as a joint-meeting coordinator sees them: its
  // ExchangeLog RPCs, asked with the auditor certificate "observer" (and kTestPurpose where a
  // read needs one, which the node keeps in its access log). Like the Status readers, each fails
  // the test when the node cannot be asked.
  //
  // LogBytes is every committed entry's exact bytes, in order; LogEntries the same parsed.
  std::vector<std::string> LogBytes();
  std::vector<caseway::v1::LogEntry> LogEntries();
  int64_t LogSize() { return static_cast<int64_t>(LogBytes().size()); }
  // Published counts the log's KIND_PUBLISHED entries: the notices published here (one entry
  // each, committed with the notice).
  int64_t Published();
  // Checkpoint is GetCheckpoint's answer for `size` (0: the latest), with only `cosigner`'s
  // cosignature when given (a note name, "<federation>/node/<jurisdiction>"); nullopt before the
  // first checkpoint. A `size` never signed fails the test.
  std::optional<caseway::v1::CheckpointResponse> Checkpoint(int64_t size = 0,
                                                            const std::string& cosigner = "");
  // CheckpointSize is the tree size of the latest signed checkpoint, 0 before the first.
  int64_t CheckpointSize();
  // Cosigners is the number of cosignatures that verify on the latest checkpoint (0 before the
  // first), or on the one of tree size `size`; with `witness`, only that node's (0 or 1).
  int Cosigners(const std::string& witness = "", int64_t size = 0);
  // WitnessedSize is the largest checkpoint of `peer` this node has cosigned (its
  // KIND_PEER_CHECKPOINT_COSIGNED entries), 0 when none.
  int64_t WitnessedSize(const std::string& peer);
  // Evidence is what GetEvidence gives of `kind` for `peer` (every page; `peer` is ignored for
  // KIND_SHARING_POLICY and is the asking party for KIND_QUERY_ANSWER_SENT).
  std::vector<caseway::v1::Evidence> Evidence(caseway::v1::Evidence::Kind kind,
                                              const std::string& peer = "");
  // InboxItems is what the Inbox RPC streams now (the notices no consumer has acknowledged,
  // oldest first), read without acknowledging them. The read is in the node's access log
  // ("inbox", by the client "observer"), as every read of personal data is; so is Evidence's of
  // query answers (by the auditor "observer").
  std::vector<caseway::v1::InboxItem> InboxItems();

  // A stopped node's store (or a restored copy before its first start) is read through the one
  // documented debug query, `caseway-node inspect --json` (docs/operator.md, "Inspecting a
  // store"), on either backend. Inspect fails the test (and returns an empty summary) when the
  // command fails.
  struct StoreSummary {
    bool backup_mark = false;  // a copy made by backup, not started on since
    int64_t notices_published = -1;
    int64_t log_entries = -1;
    int64_t checkpoint_size = -1;
    std::map<std::string, std::pair<int64_t, int64_t>> channels;  // destination: head, acked
    std::map<std::string, int64_t> cursors;                       // origin: seq
    int64_t inbox_total = -1;
    int64_t inbox_unacked = -1;
    std::map<std::string, int64_t> reads;  // the access log's records by what was read
  };
  StoreSummary Inspect();

  // What no RPC shows (the bytes at rest of a stored row) the tests read, and
  // the tampering they test they apply, in SQL that SQLite and PostgreSQL both accept
  // (docs/testing.md, "Observing a node"); byte strings are written with Bytes.
  //
  // Count runs a scalar SQL query against the node's database (read-only, another connection).
  int64_t Count(const std::string& sql) const;
  // Exec runs SQL that writes to the node's database (tampering in tests).
  void Exec(const std::string& sql) const;
  // Blobs returns the first column of every row of `sql` as bytes.
  std::vector<std::string> Blobs(const std::string& sql) const;
  // Bytes is the SQL literal of the bytes `hex` spells in this node's database: x'..' in SQLite,
  // decode('..', 'hex') in PostgreSQL.
  std::string Bytes(const std::string& hex) const;
  // on_postgres is true when the node's store is in PostgreSQL (known once it was started).
  bool on_postgres() const { return !postgres_dsn_.empty(); }
  // Freeze stops the process (SIGSTOP) and returns once every thread of it has stopped: the
  // kernel stops the other threads only when the one that took the signal runs, so on a busy
  // machine they can go on answering calls for a while after kill() returns. Thaw continues it.
  absl::Status Freeze(absl::Duration timeout = absl::Seconds(10));
  absl::Status Thaw();
  // Exited reports (and reaps) a process that ended by itself, e.g. through a crash fault.
  bool Exited();
  // The exit status Exited() saw (128 + signal when killed), -1 before.
  int exit_status() const { return exit_status_; }
  void ClearPeers() { peers_.clear(); }
  // set_port makes the node listen on `port` (e.g. one already taken, to test the refusal).
  void set_port(int port) { port_ = port; }

 private:
  // Observed asks the node's Status and returns what `pick` takes of it (-1, and a test failure,
  // when the node cannot be asked).
  int64_t Observed(const std::function<int64_t(const caseway::v1::StatusResponse&)>& pick);
  // Its client, kept from one question to the next (one connection for a WaitFor's polls), and
  // made again after every (re)start: a fresh channel, not one in gRPC's reconnect backoff.
  std::unique_ptr<caseway::client::Client> observer_;
  // The ExchangeLog stub the log readers use, kept and made again like observer_.
  std::unique_ptr<caseway::v1::ExchangeLog::Stub> auditor_;
  caseway::v1::ExchangeLog::Stub* Auditor();
  // AskLog runs one ExchangeLog call as the auditor, with a deadline and repeats on UNAVAILABLE.
  grpc::Status AskLog(const std::function<grpc::Status(grpc::ClientContext*)>& call);

  std::string tls_cert_, tls_key_, sign_key_, directory_;  // overrides; empty: the Pki's

  Pki* pki_;
  std::string dir_;
  std::string jurisdiction_;
  struct Peer {
    std::string jurisdiction, address;
    bool serve_only = false;
  };
  std::vector<Peer> peers_;
  std::string extra_yaml_;
  std::string exchange_yaml_;
  std::string exchange_log_yaml_;
  std::string env_;
  std::vector<std::string> more_env_;
  int exit_status_ = -1;
  std::string db_path_;
  std::string tls_yaml_;
  std::string storage_yaml_;
  std::string postgres_dsn_, lease_ttl_;
  bool production_binary_ = false;
  bool test_clock_ = false;
  int port_ = 0;
  pid_t pid_ = -1;
};

// AuditCommand returns argv for `caseway audit <args...>` as the auditor whose certificate has
// path prefix `auditor`, with its state and bundles under `dir`.
std::vector<std::string> AuditCommand(const Pki& pki, const std::string& auditor,
                                      const std::string& dir, std::vector<std::string> args);

// EventsSize is 1 + the index of the last entry of `n`'s log that records an event (not a witness
// record): what a checkpoint must cover once the node has settled.
int64_t EventsSize(NodeProcess& n);

// DistinctNotices counts the different (origin, notice_id) among `items`.
int64_t DistinctNotices(const std::vector<caseway::v1::InboxItem>& items);

// WaitFor polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// SampleNotice returns a valid notice of the residence-change kind (personal data is fictitious).
caseway::v1::Notice SampleNotice(const std::string& notice_id,
                                 const std::vector<std::string>& destinations);

// ToJsonLine renders a notice in protobuf JSON on one line.
std::string ToJsonLine(const google::protobuf::Message& message);

}  // namespace caseway::testing

#endif  // CASEWAY_TESTS_TESTING_HARNESS_H_
