// CommitQueue's groups on both backends (a real SQLite file, a real PostgreSQL server started for
// the suite): one failing operation rolls back alone whether or not its group took savepoints,
// a group of rerunnable operations takes none, and an operation not marked rerunnable is never
// run twice.
#include "server/store/commit_queue.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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

// Counts the hooks the queue calls: OnOpBegin marks a SAVEPOINT taken.
class CountingParticipant : public TxnParticipant {
 public:
  void OnBegin() override { ++begins; }
  void OnOpBegin() override { ++savepoints; }
  void OnOpRollback() override { ++rollbacks_to_savepoint; }
  void OnCommit() override { ++commits; }
  void OnAbort() override { ++aborts; }
  std::atomic<int> begins{0}, savepoints{0}, rollbacks_to_savepoint{0}, commits{0}, aborts{0};
};

class CommitQueueTest : public ::testing::TestWithParam<Db::Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Db::Backend::kPostgres) {
      auto dsn = testing::NewPostgresDatabase("commit_queue_test");
      ASSERT_OK(dsn);
      dsn_ = *dsn;
    }
    std::unique_ptr<Db> writer = Open();
    ASSERT_NE(writer, nullptr);
    ASSERT_OK(writer->Exec("CREATE TABLE item(name TEXT PRIMARY KEY)"));
    queue_ = std::make_unique<CommitQueue>(std::move(writer), /*max_group=*/64, &participant_);
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

  // Insert is an operation that stores `name` and counts its runs.
  CommitQueue::Apply Insert(const std::string& name) {
    return [this, name](Db* db) {
      {
        absl::MutexLock lock(&mu_);
        ++runs_[name];
      }
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
}

INSTANTIATE_TEST_SUITE_P(Backends, CommitQueueTest,
                         ::testing::Values(Db::Backend::kSqlite, Db::Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Db::Backend>& info) {
                           return info.param == Db::Backend::kSqlite ? "Sqlite" : "Postgres";
                         });

}  // namespace
}  // namespace caseway::server
