#include "server/store/commit_queue.h"

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

void CommitQueue::Submit(Apply apply, Done done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(Op{std::move(apply), std::move(done)});
      return;
    }
  }
  done(absl::UnavailableError("store is shutting down"));
}

absl::Status CommitQueue::Run(Apply apply, std::function<void()> after_commit) {
  std::promise<absl::Status> promise;
  std::future<absl::Status> result = promise.get_future();
  Submit(std::move(apply), [&promise, &after_commit](const absl::Status& s) {
    if (s.ok() && after_commit) after_commit();
    promise.set_value(s);
  });
  return result.get();
}

void CommitQueue::SetObserver(Observer observer) {
  absl::MutexLock lock(&observer_mu_);
  observer_ = std::move(observer);
}

void CommitQueue::Loop() {
  common::NameThisThread("cw-writer");
  Db* db = db_.get();
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
    results.assign(group.size(), absl::OkStatus());
    const auto began = std::chrono::steady_clock::now();
    absl::Status txn = db_->Begin();
    if (txn.ok()) {
      if (participant_) participant_->OnBegin();
      if (begin_check_) txn = begin_check_(db);
      for (size_t i = 0; i < group.size() && txn.ok(); ++i) {
        txn = db_->Exec("SAVEPOINT op");
        if (!txn.ok()) break;
        if (participant_) participant_->OnOpBegin();
        results[i] = group[i].apply(db);
        // Some errors (I/O, out of memory) make SQLite roll back the whole transaction; then the
        // savepoint is gone and nothing of this group may be reported as stored.
        if (!db->InTransaction()) {
          txn = results[i].ok() ? absl::InternalError("sqlite: transaction rolled back")
                                : results[i];
          break;
        }
        if (!results[i].ok()) {
          txn = db_->Exec("ROLLBACK TO op");
          if (participant_) participant_->OnOpRollback();
        }
        if (txn.ok()) txn = db_->Exec("RELEASE op");
      }
      if (txn.ok()) txn = db_->Exec("COMMIT");
      if (!txn.ok()) {
        db_->Exec("ROLLBACK").IgnoreError();
        if (participant_) participant_->OnAbort();
      } else if (participant_) {
        participant_->OnCommit();
      }
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

}  // namespace caseway::server
