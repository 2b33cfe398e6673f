// CommitQueue's groups on both backends (a real SQLite file, a real PostgreSQL server started for
// the suite): one failing operation rolls back alone whether or not its group took savepoints,
// a group of rerunnable operations takes none, and an operation not marked rerunnable is never
// run twice. Every operation also appends to a real MerkleLog (the exchange log's participant),
// whose committed tree must always be the one stored.
#include "server/store/commit_queue.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/merkle_log.h"
#include "server/store/notice_store.h"
#include "server/store/postgres.h"
#include "server/store/sqlite.h"
#include "tests/testing/harness.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/status_matchers.h"

namespace caseway::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Rerun = CommitQueue::Rerun;

// Counts the hooks the queue calls (OnOpBegin marks a SAVEPOINT taken) and passes them on.
class CountingParticipant : public TxnParticipant {
 public:
  void OnBegin() override { ++begins; next->OnBegin(); }
  void OnOpBegin() override { ++savepoints; next->OnOpBegin(); }
  void OnOpRollback() override { ++rollbacks_to_savepoint; next->OnOpRollback(); }
  void OnCommit() override { ++commits; next->OnCommit(); }
  void OnAbort() override { ++aborts; next->OnAbort(); }
  std::atomic<int> begins{0}, savepoints{0}, rollbacks_to_savepoint{0}, commits{0}, aborts{0};
  TxnParticipant* next = nullptr;
};

class CommitQueueTest : public ::testing::TestWithParam<Db::Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Db::Backend::kPostgres) {
      auto dsn = testing::NewPostgresDatabase("commit_queue_test");
      ASSERT_OK(dsn);
      dsn_ = *dsn;
    }
    {
      // The store's own schema, for the exchange log's tables the MerkleLog writes.
      StoreOptions options;
      options.path = dir_.path() + "/test.db";
      options.postgres_dsn = dsn_;
      options.self = "360102";
      auto store = NoticeStore::Open(options);
      ASSERT_OK(store.status());
    }
    std::unique_ptr<Db> writer = Open();
    ASSERT_NE(writer, nullptr);
    ASSERT_OK(writer->Exec("CREATE TABLE item(name TEXT PRIMARY KEY)"));
    auto log = MerkleLog::Load(writer.get());
    ASSERT_OK(log.status());
    log_ = std::move(*log);
    participant_.next = log_.get();
    queue_ = std::make_unique<CommitQueue>(std::move(writer), /*max_group=*/64, &participant_);
  }

  void TearDown() override {
    // The log's statements belong to the queue's connection: they go first. The queue is idle.
    log_.reset();
    queue_.reset();
  }

  std::unique_ptr<Db> Open() {
    if (GetParam() == Db::Backend::kSqlite) {
      auto db = SqliteDb::Open(dir_.path() + "/test.db");
      EXPECT_OK(db.status());
      return db.ok() ? std::move(*db) : nullptr;
    }
    auto db = PgDb::Connect(dsn_);
    EXPECT_OK(db.status());
    return db.ok() ? std::move(*db) : nullptr;
  }

  // Insert is an operation that logs `name`, then stores it, and counts its runs. When the name is
  // taken, it fails after its log entry was appended.
  CommitQueue::Apply Insert(const std::string& name) {
    return [this, name](Db* db) -> absl::Status {
      {
        absl::MutexLock lock(&mu_);
        ++runs_[name];
      }
      RETURN_IF_ERROR(log_->Append(name).status());
      Stmt s(db, "INSERT INTO item(name) VALUES(?)");
      s.Bind(1, name);
      return Done(s, "insert item");
    };
  }

  int Runs(const std::string& name) {
    absl::MutexLock lock(&mu_);
    return runs_[name];
  }

  // Stored reads the committed names through a connection of its own.
  std::vector<std::string> Stored() {
    std::unique_ptr<Db> db = Open();
    std::vector<std::string> out;
    if (db == nullptr) return out;
    Stmt s(db.get(), "SELECT name FROM item ORDER BY name");
    while (s.Step()) out.push_back(s.Text(0));
    EXPECT_OK(s.status("read items"));
    return out;
  }

  // LogMatchesTheStore: the log's committed tree is the stored one, and its entries are the
  // stored names, in the order they were committed.
  void ExpectLogMatchesTheStore(const std::vector<std::string>& committed_order) {
    std::unique_ptr<Db> db = Open();
    ASSERT_NE(db, nullptr);
    const auto [size, root] = log_->Committed();
    EXPECT_EQ(size, committed_order.size());
    auto stored = MerkleLog::StoredFrontier(db.get(), size);
    ASSERT_OK(stored.status());
    EXPECT_EQ(stored->Root(), root);
    std::vector<std::string> leaves;
    Stmt s(db.get(), "SELECT bytes FROM log_leaf ORDER BY idx");
    while (s.Step()) leaves.emplace_back(s.Blob(0));
    EXPECT_OK(s.status("read leaves"));
    EXPECT_EQ(leaves, committed_order);
  }

  // Group submits `ops` so that they form one group: the writer is held inside an operation of
  // its own (which stores "0-held") until all are queued. Returns each one's status.
  std::vector<absl::Status> Group(const std::vector<std::pair<CommitQueue::Apply, Rerun>>& ops) {
    absl::Notification entered, release;
    absl::Status held_status;
    absl::Notification held_done;
    CommitQueue::Apply hold = Insert("0-held");
    queue_->Submit(
        [&, hold](Db* db) {
          entered.Notify();
          release.WaitForNotification();
          return hold(db);
        },
        [&](const absl::Status& s) {
          held_status = s;
          held_done.Notify();
        },
        Rerun::kSafe);
    entered.WaitForNotification();
    std::vector<absl::Status> statuses(ops.size());
    std::vector<std::unique_ptr<absl::Notification>> done;
    for (size_t i = 0; i < ops.size(); ++i) {
      done.push_back(std::make_unique<absl::Notification>());
      queue_->Submit(
          ops[i].first,
          [&statuses, &done, i](const absl::Status& s) {
            statuses[i] = s;
            done[i]->Notify();
          },
          ops[i].second);
    }
    release.Notify();
    held_done.WaitForNotification();
    EXPECT_OK(held_status);
    for (auto& d : done) d->WaitForNotification();
    return statuses;
  }

  testing::TempDir dir_;
  std::string dsn_;
  CountingParticipant participant_;
  std::unique_ptr<CommitQueue> queue_;
  std::unique_ptr<MerkleLog> log_;
  absl::Mutex mu_;
  std::map<std::string, int> runs_ ABSL_GUARDED_BY(mu_);
};

TEST_P(CommitQueueTest, AGroupOfRerunnableOperationsTakesNoSavepoint) {
  std::vector<absl::Status> s =
      Group({{Insert("a"), Rerun::kSafe}, {Insert("b"), Rerun::kSafe}, {Insert("c"), Rerun::kSafe}});
  for (const auto& status : s) EXPECT_OK(status);
  EXPECT_THAT(Stored(), ElementsAre("0-held", "a", "b", "c"));
  EXPECT_EQ(participant_.savepoints, 0);
  EXPECT_EQ(participant_.commits, 2);  // the held operation's group, then the three
  EXPECT_EQ(participant_.aborts, 0);
  EXPECT_EQ(Runs("a") + Runs("b") + Runs("c"), 3);
  EXPECT_EQ(queue_->groups_rerun(), 0u);
  ExpectLogMatchesTheStore({"0-held", "a", "b", "c"});
}

TEST_P(CommitQueueTest, AFailureInAGroupWithoutSavepointsRunsTheGroupAgainAndRollsBackAlone) {
  // "0-held" is stored by the group before: inserting it again fails (primary key).
  std::vector<absl::Status> s = Group({{Insert("a"), Rerun::kSafe},
                                       {Insert("b"), Rerun::kSafe},
                                       {Insert("0-held"), Rerun::kSafe},
                                       {Insert("c"), Rerun::kSafe}});
  EXPECT_OK(s[0]);
  EXPECT_OK(s[1]);
  EXPECT_FALSE(s[2].ok());
  EXPECT_THAT(std::string(s[2].message()), HasSubstr("insert item"));
  EXPECT_OK(s[3]);
  EXPECT_THAT(Stored(), ElementsAre("0-held", "a", "b", "c"));
  // The first run stopped at the failure and was rolled back whole; the second took a savepoint
  // per operation and rolled back to the failing one's.
  EXPECT_EQ(Runs("a"), 2);
  EXPECT_EQ(Runs("b"), 2);
  EXPECT_EQ(Runs("0-held"), 1 + 2);
  EXPECT_EQ(Runs("c"), 1);
  EXPECT_EQ(queue_->groups_rerun(), 1u);
  EXPECT_EQ(participant_.aborts, 1);
  EXPECT_EQ(participant_.savepoints, 4);
  EXPECT_EQ(participant_.rollbacks_to_savepoint, 1);
  EXPECT_EQ(participant_.commits, 2);
  // The failing operation's entry, appended before it failed, is in neither the log nor the
  // tree; the entries of the first run, rolled back, were appended again under the same indexes.
  ExpectLogMatchesTheStore({"0-held", "a", "b", "c"});
}

TEST_P(CommitQueueTest, AnOperationNotMarkedRerunnableRunsOnceInsideItsSavepoint) {
  std::vector<absl::Status> s = Group({{Insert("a"), Rerun::kUnsafe},
                                       {Insert("0-held"), Rerun::kSafe},
                                       {Insert("c"), Rerun::kSafe}});
  EXPECT_OK(s[0]);
  EXPECT_FALSE(s[1].ok());
  EXPECT_OK(s[2]);
  EXPECT_THAT(Stored(), ElementsAre("0-held", "a", "c"));
  EXPECT_EQ(Runs("a"), 1);
  EXPECT_EQ(Runs("0-held"), 1 + 1);
  EXPECT_EQ(Runs("c"), 1);
  EXPECT_EQ(queue_->groups_rerun(), 0u);
  EXPECT_EQ(participant_.savepoints, 3);
  EXPECT_EQ(participant_.rollbacks_to_savepoint, 1);
  EXPECT_EQ(participant_.aborts, 0);
  ExpectLogMatchesTheStore({"0-held", "a", "c"});
}

INSTANTIATE_TEST_SUITE_P(Backends, CommitQueueTest,
                         ::testing::Values(Db::Backend::kSqlite, Db::Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Db::Backend>& info) {
                           return info.param == Db::Backend::kSqlite ? "Sqlite" : "Postgres";
                         });

}  // namespace
}  // namespace caseway::server
