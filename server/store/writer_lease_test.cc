// The writer lease and its fence, on a real PostgreSQL server (tests/testing/postgres_server.h).
#include "server/store/writer_lease.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/notice_store.h"
#include "server/store/postgres.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/proxy.h"
#include "tests/testing/status_matchers.h"

namespace caseway::server {
namespace {

using ::caseway::testing::StatusIs;
using ::testing::HasSubstr;

// LostListener records the reason a lease is lost.
struct LostListener {
  absl::Notification heard;
  std::string reason;
  std::function<void(const std::string&)> Callback() {
    return [this](const std::string& r) {
      reason = r;
      heard.Notify();
    };
  }
};

class WriterLeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dsn = testing::NewPostgresDatabase("lease");
    ASSERT_OK(dsn);
    dsn_ = *dsn;
  }
  LeaseOptions Options(const std::string& holder) const {
    LeaseOptions o;
    o.dsn = dsn_;
    o.holder = holder;
    o.ttl = absl::Seconds(1);
    o.poll = absl::Milliseconds(100);
    return o;
  }
  // TryAcquire tries `tries` times, then gives up; `seen` receives the holder reported.
  absl::StatusOr<std::unique_ptr<WriterLease>> TryAcquire(const std::string& holder, int tries,
                                                          std::string* seen = nullptr) {
    int left = tries;
    return WriterLease::Acquire(
        Options(holder),
        [seen](const WriterLease::Wait& w) {
          if (seen != nullptr) *seen = w.error.ok() ? w.holder : w.error.ToString();
        },
        [&left](absl::Duration d) {
          if (--left <= 0) return false;
          absl::SleepFor(d);
          return true;
        });
  }
  // FenceNow runs the fence of (holder, epoch) in a transaction of its own.
  absl::Status FenceNow(const std::string& holder, int64_t epoch) {
    auto db = PgDb::Connect(dsn_);
    if (!db.ok()) return db.status();
    if (absl::Status s = (*db)->Begin(); !s.ok()) return s;
    absl::Status s = WriterLease::Fence(db->get(), holder, epoch);
    (*db)->Exec("ROLLBACK").IgnoreError();
    return s;
  }
  StoreOptions Store(const WriterLease& lease, std::function<void(const absl::Status&)> fenced) {
    StoreOptions o;
    o.postgres_dsn = dsn_;
    o.self = "360102";
    o.log_enabled = false;
    o.lease_holder = lease.holder();
    o.lease_epoch = lease.epoch();
    o.fenced = std::move(fenced);
    return o;
  }
  static PreparedNotice Notice(const std::string& id) {
    v1::Notice n;
    n.set_notice_id(id);
    n.set_case_id("c");
    n.add_destinations("440305");
    PreparedNotice p;
    p.notice_id = id;
    p.destinations = {"440305"};
    p.bytes = n.SerializeAsString();
    p.digest = common::Sha256(p.bytes);
    return p;
  }

  std::string dsn_;
};

TEST_F(WriterLeaseTest, OneHolderAtATimeAndAnExpiredLeaseGoesToTheNextWithAHigherEpoch) {
  auto a = TryAcquire("node-a", 1);
  ASSERT_OK(a);
  EXPECT_EQ((*a)->epoch(), 1);
  EXPECT_OK(FenceNow("node-a", 1));

  std::string seen;
  EXPECT_THAT(TryAcquire("node-b", 3, &seen), StatusIs(absl::StatusCode::kCancelled, HasSubstr("gave up")));
  EXPECT_EQ(seen, "node-a");

  // node-a does not renew (no KeepRenewed): after its second, node-b takes over.
  absl::SleepFor(absl::Milliseconds(1100));
  auto b = TryAcquire("node-b", 20);
  ASSERT_OK(b);
  EXPECT_EQ((*b)->epoch(), 2);
  EXPECT_OK(FenceNow("node-b", 2));
  EXPECT_THAT(FenceNow("node-a", 1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("taken by node-b (epoch 2; this node had 1)")));
  a->reset();  // ending a lease that is no longer held changes nothing
  EXPECT_OK(FenceNow("node-b", 2));
}

TEST_F(WriterLeaseTest, ARenewedLeaseIsKeptAndAnEndedOneIsTakenAtTheNextTry) {
  auto a = TryAcquire("node-a", 1);
  ASSERT_OK(a);
  std::atomic<bool> lost{false};
  (*a)->KeepRenewed([&](const std::string&) { lost = true; });
  // Three times its TTL: renewed all along, never taken.
  EXPECT_THAT(TryAcquire("node-b", 30), StatusIs(absl::StatusCode::kCancelled, HasSubstr("gave up")));
  EXPECT_FALSE(lost);
  EXPECT_OK(FenceNow("node-a", 1));
  a->reset();  // a clean stop ends the lease
  const absl::Time stopped = absl::Now();
  auto b = TryAcquire("node-b", 2);
  ASSERT_OK(b);
  EXPECT_LT(absl::Now() - stopped, absl::Milliseconds(900));  // before the TTL would have run out
  EXPECT_EQ((*b)->epoch(), 2);
}

TEST_F(WriterLeaseTest, ALeaseTakenAwayIsReportedLost) {
  auto a = TryAcquire("node-a", 1);
  ASSERT_OK(a);
  LostListener lost;
  (*a)->KeepRenewed(lost.Callback());
  // An operator (or a bug) moves the lease: the holder hears it at its next renewal.
  auto db = PgDb::Connect(dsn_);
  ASSERT_OK(db);
  ASSERT_OK((*db)->Exec("UPDATE writer_lease SET holder = 'someone', epoch = epoch + 1"));
  ASSERT_TRUE(lost.heard.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_THAT(lost.reason, HasSubstr("taken or had expired"));
}

// A node restarted after a crash takes the lease of its dead predecessor on the same host at once;
// a holder on another host, or alive here, is waited for.
TEST_F(WriterLeaseTest, TheLeaseOfADeadProcessOfThisHostIsTakenAtOnce) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);  // a process id that no longer runs
  const std::string host = LeaseHolderName().substr(0, LeaseHolderName().find('/'));
  auto db = PgDb::Connect(dsn_);
  ASSERT_OK(db);
  ASSERT_OK(WriterLease::CreateTable(db->get()));
  auto hold = [&](const std::string& holder) {
    Stmt s(db->get(), "INSERT INTO writer_lease(name, holder, epoch, expires_at) "
                      "VALUES('writer', ?, 7, clock_timestamp() + interval '1 hour') "
                      "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, epoch = 7, "
                      "expires_at = excluded.expires_at");
    s.Bind(1, holder);
    ASSERT_OK(Done(s, "hold"));
  };
  hold(absl::StrCat("elsewhere/", child, "/0000"));
  EXPECT_THAT(TryAcquire("node-b", 2), StatusIs(absl::StatusCode::kCancelled, HasSubstr("gave up")));
  hold(absl::StrCat(host, "/", getpid(), "/0000"));  // alive: this very process
  EXPECT_THAT(TryAcquire("node-b", 2), StatusIs(absl::StatusCode::kCancelled, HasSubstr("gave up")));
  hold(absl::StrCat(host, "/", child, "/0000"));
  auto b = TryAcquire("node-b", 1);
  ASSERT_OK(b);
  EXPECT_EQ((*b)->epoch(), 8);
}

// A holder cut off from the database cannot renew: it hears the lease is lost once its TTL has
// passed since the last renewal (by then the database may have given it to another node).
TEST_F(WriterLeaseTest, AHolderCutOffFromTheDatabaseHearsItLostWithinItsTtl) {
  testing::LoopbackProxy proxy(testing::SharedPostgres()->port());
  const std::string port = absl::StrCat("port=", testing::SharedPostgres()->port());
  LeaseOptions options = Options("node-a");
  options.dsn = absl::StrReplaceAll(
      dsn_, {{port, absl::StrCat("port=", proxy.address().substr(proxy.address().rfind(':') + 1))}});
  auto a = WriterLease::Acquire(options, nullptr, [](absl::Duration) { return false; });
  ASSERT_OK(a);
  LostListener lost;
  (*a)->KeepRenewed(lost.Callback());
  proxy.SetDown(true);
  const absl::Time cut = absl::Now();
  ASSERT_TRUE(lost.heard.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_LT(absl::Now() - cut, absl::Milliseconds(1500));
  EXPECT_THAT(lost.reason, HasSubstr("not renewed within 1s"));
}

// The store's writes check the lease first: once another node holds it, a deposed node's publish
// fails whole, stores nothing, and the node hears it once.
TEST_F(WriterLeaseTest, ADeposedNodeCanNeverWriteAgain) {
  auto a = TryAcquire("node-a", 1);
  ASSERT_OK(a);
  std::atomic<int> fenced{0};
  auto store = NoticeStore::Open(Store(**a, [&](const absl::Status&) { ++fenced; }));
  ASSERT_OK(store);
  ASSERT_OK((*store)->Publish({Notice("n-1")}).status());
  EXPECT_EQ((*store)->Channel("440305").head, 1u);

  absl::SleepFor(absl::Milliseconds(1100));  // node-a paused past its TTL
  auto b = TryAcquire("node-b", 20);
  ASSERT_OK(b);
  EXPECT_THAT((*store)->Publish({Notice("n-2"), Notice("n-3")}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("taken by node-b")));
  EXPECT_THAT((*store)->RecordAck("440305", 1),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("taken by node-b")));
  EXPECT_EQ(fenced.load(), 1);
  auto db = PgDb::Connect(dsn_);
  ASSERT_OK(db);
  Stmt count(db->get(), "SELECT count(*), max(head) FROM notice, channel");
  ASSERT_TRUE(count.Step());
  EXPECT_EQ(count.Int(0), 1);
  EXPECT_EQ(count.Int(1), 1);
  Stmt acked(db->get(), "SELECT acked FROM channel");
  ASSERT_TRUE(acked.Step());
  EXPECT_EQ(acked.Int(0), 0);
  store->reset();

  // The new holder opens the same database and goes on from where node-a stopped.
  auto next = NoticeStore::Open(Store(**b, nullptr));
  ASSERT_OK(next);
  auto r = (*next)->Publish({Notice("n-2")});
  ASSERT_OK(r.status());
  EXPECT_EQ((*r)[0].deliveries(0).seq(), 2u);
}

// A holder that freezes inside a write transaction (past the fence, so holding the lease row's
// share lock: SIGSTOP, a paused VM) keeps its connection open. Its session is ended by the server
// after idle_in_transaction (the store's setting), and the next node takes the lease then; the
// frozen writer, woken, finds its session gone and nothing it wrote kept.
TEST_F(WriterLeaseTest, AHolderFrozenInsideAWriteTransactionLosesItsSessionAndTheLeaseMovesOn) {
  auto a = TryAcquire("node-a", 1);
  ASSERT_OK(a);
  StoreOptions o = Store(**a, nullptr);
  o.postgres_idle_in_transaction = absl::Seconds(1);
  auto writer = NoticeStore::Connect(o);  // a session as the store opens it
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Begin());
  ASSERT_OK(WriterLease::Fence(writer->get(), (*a)->holder(), (*a)->epoch()));
  ASSERT_OK((*writer)->Exec("CREATE TABLE written_while_frozen(x INTEGER)"));
  const absl::Time frozen = absl::Now();

  std::string seen;
  auto b = TryAcquire("node-b", 40, &seen);  // each try waits at most 100 ms for the row lock
  ASSERT_OK(b) << "the last try saw: " << seen;
  EXPECT_LT(absl::Now() - frozen, absl::Seconds(4));
  EXPECT_EQ((*b)->epoch(), 2);

  EXPECT_THAT((*writer)->Exec("COMMIT"), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_TRUE((*writer)->Broken());
  auto tables = testing::PgQuery(dsn_, "SELECT count(*) FROM pg_tables WHERE tablename = "
                                       "'written_while_frozen'");
  ASSERT_OK(tables);
  EXPECT_EQ(*tables, std::vector<std::string>{"0"});
}

// The server ends the store's sessions (an administrator's pg_terminate_backend, a restart): the
// write in flight fails and is not kept, `connection_lost` runs once (the node stops then), later
// writes fail too, and a read connects again.
TEST_F(WriterLeaseTest, AStoreThatLosesItsWriterConnectionFailsItsWritesAndSaysSoOnce) {
  auto a = TryAcquire("node-a", 1);
  ASSERT_OK(a);
  std::atomic<int> lost{0};
  StoreOptions o = Store(**a, nullptr);
  o.connection_lost = [&](const absl::Status& s) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    ++lost;
  };
  auto store = NoticeStore::Open(o);
  ASSERT_OK(store);
  ASSERT_OK((*store)->Publish({Notice("n-1")}).status());
  ASSERT_OK((*store)->ReadChannel("440305", 1, 10, 1 << 20).status());  // a reader is pooled

  ASSERT_OK(testing::PgQuery(dsn_, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                .status());
  // (pg_terminate_backend only signals: wait until the sessions are gone.)
  for (int i = 0; i < 100; ++i) {
    auto left = testing::PgQuery(dsn_, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                       "current_database() AND pid <> pg_backend_pid()");
    ASSERT_OK(left);
    if (*left == std::vector<std::string>{"0"}) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_THAT((*store)->Publish({Notice("n-2")}).status(), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_EQ(lost.load(), 1);
  EXPECT_THAT((*store)->Publish({Notice("n-3")}).status(), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_EQ(lost.load(), 1);
  EXPECT_THAT((*store)->ReadChannel("440305", 1, 10, 1 << 20).status(),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  auto read = (*store)->ReadChannel("440305", 1, 10, 1 << 20);
  ASSERT_OK(read);
  EXPECT_EQ(read->size(), 1u);
  store->reset();

  auto again = NoticeStore::Open(Store(**a, nullptr));
  ASSERT_OK(again);
  EXPECT_EQ((*again)->Channel("440305").head, 1u);
}

}  // namespace
}  // namespace caseway::server
