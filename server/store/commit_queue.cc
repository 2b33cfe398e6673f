#include "server/store/commit_queue.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <utility>

#include "common/thread_name.h"

namespace caseway::server {

CommitQueue::CommitQueue(std::unique_ptr<Db> db, int max_group, TxnParticipant* participant,
                         BeginCheck begin_check, ConnectionLost lost)
    : db_(std::move(db)),
      max_group_(max_group),
      participant_(participant),
      begin_check_(std::move(begin_check)),
      lost_(std::move(lost)),
      thread_([this] { Loop(); }) {}

CommitQueue::~CommitQueue() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void CommitQueue::Submit(Apply apply, Done done, Rerun rerun) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(Op{std::move(apply), std::move(done), rerun});
      return;
    }
  }
  done(absl::UnavailableError("store is shutting down"));
}

absl::Status CommitQueue::Run(Apply apply, std::function<void()> after_commit, Rerun rerun) {
  std::promise<absl::Status> promise;
  std::future<absl::Status> result = promise.get_future();
  Submit(
      std::move(apply),
      [&promise, &after_commit](const absl::Status& s) {
        if (s.ok() && after_commit) after_commit();
        promise.set_value(s);
      },
      rerun);
  return result.get();
}

void CommitQueue::SetObserver(Observer observer) {
  absl::MutexLock lock(&observer_mu_);
  observer_ = std::move(observer);
}

void CommitQueue::Loop() {
  common::NameThisThread("cw-writer");
  std::vector<Op> group;
  std::vector<absl::Status> results;
  for (;;) {
    group.clear();
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](CommitQueue* q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(q->mu_) {
            return q->stopping_ || !q->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && static_cast<int>(group.size()) < max_group_) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const auto began = std::chrono::steady_clock::now();
    const bool all_safe = std::all_of(group.begin(), group.end(),
                                      [](const Op& op) { return op.rerun == Rerun::kSafe; });
    bool again = false;
    absl::Status txn = RunGroup(group, results, /*savepoints=*/!all_safe, &again);
    if (again) {
      reruns_.fetch_add(1);
      txn = RunGroup(group, results, /*savepoints=*/true, &again);
    }
    const auto busy = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - began);
    busy_us_.fetch_add(busy.count());
    if (txn.ok()) {
      groups_.fetch_add(1);
      ops_.fetch_add(group.size());
    }
    {
      absl::MutexLock lock(&observer_mu_);
      if (observer_) observer_(absl::FromChrono(busy), group.size(), txn.ok());
    }
    // The loss is reported before the group's callers hear their failure.
    if (!txn.ok() && lost_ && !lost_called_ && db_->Broken()) {
      lost_called_ = true;
      lost_(txn);
    }
    for (size_t i = 0; i < group.size(); ++i) {
      group[i].done(txn.ok() ? results[i] : txn);
    }
  }
}

absl::Status CommitQueue::RunGroup(std::vector<Op>& group, std::vector<absl::Status>& results,
                                   bool savepoints, bool* again) {
  Db* db = db_.get();
  *again = false;
  results.assign(group.size(), absl::OkStatus());
  absl::Status txn = db->Begin();
  if (!txn.ok()) return txn;
  if (participant_) participant_->OnBegin();
  if (begin_check_) txn = begin_check_(db);
  for (size_t i = 0; i < group.size() && txn.ok(); ++i) {
    if (savepoints) {
      txn = db->Exec("SAVEPOINT op");
      if (!txn.ok()) break;
      if (participant_) participant_->OnOpBegin();
    }
    results[i] = group[i].apply(db);
    // Some errors (I/O, out of memory) make SQLite roll back the whole transaction; then the
    // savepoint is gone and nothing of this group may be reported as stored.
    if (!db->InTransaction()) {
      txn = results[i].ok() ? absl::InternalError("sqlite: transaction rolled back") : results[i];
      break;
    }
    if (results[i].ok()) {
      if (savepoints) txn = db->Exec("RELEASE op");
    } else if (savepoints) {
      txn = db->Exec("ROLLBACK TO op");
      if (participant_) participant_->OnOpRollback();
      if (txn.ok()) txn = db->Exec("RELEASE op");
    } else {
      // No savepoint to return to: the group runs again, with them (every operation is kSafe).
      absl::Status rolled_back = db->Exec("ROLLBACK");
      if (participant_) participant_->OnAbort();
      *again = rolled_back.ok();
      return rolled_back.ok() ? results[i] : rolled_back;
    }
  }
  if (txn.ok()) txn = db->Exec("COMMIT");
  if (!txn.ok()) {
    db->Exec("ROLLBACK").IgnoreError();
    if (participant_) participant_->OnAbort();
  } else if (participant_) {
    participant_->OnCommit();
  }
  return txn;
}

}  // namespace caseway::server
