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
  virtual void OnOpRollback() = 0;  // that operation failed and was rolled back to it
  virtual void OnCommit() = 0;      // the group's COMMIT is durable
  virtual void OnAbort() = 0;       // the group's transaction was rolled back whole
};

// CommitQueue takes write operations from any thread and runs them on its own writer thread:
// each group of up to `max_group` queued operations is one transaction and one fsync
// (synchronous=FULL), and one failing operation rolls back alone: the others commit. An
// operation's `done` runs on the writer thread after the COMMIT is durable (or failed), in
// submission order.
//
// How a failing operation rolls back alone depends on the group. An operation submitted as
// Rerun::kSafe may be run more than once; a group made only of such operations runs without
// savepoints, and when one of them fails the whole transaction is rolled back and the group run
// again with a SAVEPOINT around each operation. Otherwise every operation runs inside its own
// SAVEPOINT the first time. (A savepoint makes SQLite copy every page an operation changes into
// a statement journal first: without them the origin's writer spent 9% less CPU per batched
// notice, bench/results/PROFILE.md. Failures are rare: a refused batch, a content conflict.)
//
// Concurrency: thread-safe. `apply` and `done` run on the writer thread only and must not block
// on other operations of this queue.
// Lifetime: the destructor drains every queued operation, then stops the thread.
// Limitations: a failed COMMIT fails every operation in its group with the commit's status.
class CommitQueue {
 public:
  using Apply = std::function<absl::Status(Db* db)>;
  using Done = std::function<void(const absl::Status&)>;

  // Rerun says whether the writer may run an operation's `apply` again after rolling its
  // transaction back. kSafe promises that `apply` starts from scratch on every call: whatever it
  // fills in outside the database (results, keys) is reset first, and it has no other effect
  // that a rollback would not undo (TxnParticipant state is restored by the queue).
  enum class Rerun { kUnsafe, kSafe };

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
  void Submit(Apply apply, Done done, Rerun rerun = Rerun::kUnsafe);

  // Run submits and waits for the durable result.
  absl::Status Run(Apply apply, std::function<void()> after_commit = nullptr,
                   Rerun rerun = Rerun::kUnsafe);

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
  // Groups run without savepoints in which an operation failed, so that they ran again.
  uint64_t groups_rerun() const { return reruns_.load(); }

 private:
  struct Op {
    Apply apply;
    Done done;
    Rerun rerun;
  };
  void Loop();
  // RunGroup runs `group` in one transaction and sets `results`; it returns the transaction's
  // own status (not OK: nothing of the group is stored). With `savepoints` false it stops as soon
  // as an operation fails, rolls the transaction back and sets `*again`, for the caller to run the
  // group again with them.
  absl::Status RunGroup(std::vector<Op>& group, std::vector<absl::Status>& results,
                        bool savepoints, bool* again);

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
  std::atomic<uint64_t> reruns_{0};
  absl::Mutex observer_mu_;
  Observer observer_ ABSL_GUARDED_BY(observer_mu_);
  std::thread thread_;  // the writer: the only thread that writes to db_
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_COMMIT_QUEUE_H_
