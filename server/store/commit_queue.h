// CommitQueue: the single writer thread of a node's database, committing requests in groups.
#ifndef CASEWAY_SERVER_STORE_COMMIT_QUEUE_H_
#define CASEWAY_SERVER_STORE_COMMIT_QUEUE_H_

#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/store/sql.h"

namespace caseway::server {

// TxnParticipant keeps in-memory state in step with the writer's transactions (e.g. the Merkle
// frontier of the exchange log). All hooks run on the writer thread.
class TxnParticipant {
 public:
  virtual ~TxnParticipant() = default;
  virtual void OnBegin() = 0;       // a group transaction starts
  virtual void OnOpBegin() = 0;     // an operation's SAVEPOINT was taken
  virtual void OnOpRollback() = 0;  // that operation failed and was rolled back
  virtual void OnCommit() = 0;      // the group's COMMIT is durable
  virtual void OnAbort() = 0;       // the group's COMMIT failed and was rolled back
};

// CommitQueue takes write operations from any thread and runs them on its own writer thread:
// each group of up to `max_group` queued operations is one transaction and one fsync
// (synchronous=FULL), each operation inside its own SAVEPOINT so that one failing operation
// rolls back alone. An operation's `done` runs on the writer thread after the COMMIT is durable
// (or failed), in submission order.
//
// Concurrency: thread-safe. `apply` and `done` run on the writer thread only and must not block
// on other operations of this queue.
// Lifetime: the destructor drains every queued operation, then stops the thread.
// Limitations: a failed COMMIT fails every operation in its group with the commit's status.
class CommitQueue {
 public:
  using Apply = std::function<absl::Status(Db* db)>;
  using Done = std::function<void(const absl::Status&)>;

  // BeginCheck runs first in every group transaction; when it fails, the group fails with its
  // status and is rolled back (the writer lease's fence: server/store/writer_lease.h).
  using BeginCheck = std::function<absl::Status(Db* db)>;
  // ConnectionLost runs once, when a group found the connection broken (Db::Broken: PostgreSQL
  // went away or ended the session), before that group's callers hear that it failed. Every later
  // group fails too.
  using ConnectionLost = std::function<void(const absl::Status&)>;

  // `participant` (may be null) must outlive the queue.
  CommitQueue(std::unique_ptr<Db> db, int max_group, TxnParticipant* participant = nullptr,
              BeginCheck begin_check = nullptr, ConnectionLost lost = nullptr);
  ~CommitQueue();

  // Submit queues an operation; `done` receives its final status after the commit.
  // UNAVAILABLE (through done) once the queue is stopping.
  void Submit(Apply apply, Done done);

  // Run submits and waits for the durable result.
  absl::Status Run(Apply apply, std::function<void()> after_commit = nullptr);

  // SetObserver installs the one callback run on the writer thread after every group
  // transaction: its duration from BEGIN to the end of COMMIT, its size and whether it committed.
  // It must not block.
  using Observer = std::function<void(absl::Duration, size_t operations, bool committed)>;
  void SetObserver(Observer observer);

  // Stats for status pages and benchmarks.
  uint64_t groups_committed() const { return groups_.load(); }
  uint64_t ops_committed() const { return ops_.load(); }
  // Time spent from BEGIN to the end of COMMIT, in microseconds, summed over groups.
  uint64_t busy_micros() const { return busy_us_.load(); }

 private:
  struct Op {
    Apply apply;
    Done done;
  };
  void Loop();

  std::unique_ptr<Db> db_;
  const int max_group_;
  TxnParticipant* const participant_;
  const BeginCheck begin_check_;
  const ConnectionLost lost_;
  bool lost_called_ = false;  // writer thread only
  absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> groups_{0};
  std::atomic<uint64_t> ops_{0};
  std::atomic<uint64_t> busy_us_{0};
  absl::Mutex observer_mu_;
  Observer observer_ ABSL_GUARDED_BY(observer_mu_);
  std::thread thread_;  // the writer: the only thread that writes to db_
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_COMMIT_QUEUE_H_
