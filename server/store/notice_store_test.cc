#include "server/store/notice_store.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <dirent.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/merkle.h"
#include "common/notice_facts.h"
#include "common/signing.h"
#include "common/validation.h"
#include "server/store/merkle_log.h"
#include "server/store/postgres.h"
#include "server/store/reseal.h"
#include "server/store/sealer.h"
#include "server/store/sqlite.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/status_matchers.h"

namespace caseway::server {
namespace {

using ::caseway::testing::StatusIs;
using ::testing::HasSubstr;

// NoticeStoreTest runs on SQLite; StoreConformanceTest (below) runs a test on every backend.
class NoticeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/caseway-store-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/node.db";
    if (backend_ == Db::Backend::kPostgres) {
      auto dsn = testing::NewPostgresDatabase("store");
      ASSERT_OK(dsn);
      dsn_ = *dsn;
    }
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  std::unique_ptr<NoticeStore> Open(bool log = false) {
    StoreOptions options;
    options.path = path_;
    options.postgres_dsn = dsn_;
    options.group_commit_max = 64;
    options.self = "360102";
    options.log_enabled = log;
    options.sealer = sealer_;
    options.case_merge_interval = case_merge_interval_;
    options.case_merge_rows = case_merge_rows_;
    options.wal_restart_bytes = wal_restart_bytes_;
    auto s = NoticeStore::Open(options);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // UseSealer makes Open seal bodies with a fresh key file's key.
  void UseSealer() {
    const std::string file = dir_ + "/storage.keys";
    ASSERT_TRUE(Sealer::AddKey(file).ok());
    auto sealer = Sealer::Load(file);
    ASSERT_TRUE(sealer.ok()) << sealer.status();
    sealer_ = std::move(*sealer);
  }
  // RawDb is a connection to the store's database, beside the store (for what no method shows).
  std::unique_ptr<Db> RawDb() {
    auto db = NoticeStore::Connect(Unsealed());
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? std::move(*db) : nullptr;
  }
  // SealedRows counts the sealed bodies in `table`.`column`, read from the database.
  int64_t SealedRows(const std::string& table, const std::string& column) {
    auto db = RawDb();
    const std::string sql =
        "SELECT count(*) FROM " + table + " WHERE substr(" + column + ", 1, 1) = ?";
    Stmt s(db.get(), sql.c_str());
    s.BindBlob(1, "\xCF");
    return s.Step() ? s.Int(0) : -1;
  }
  // CountRows runs `sql`, a count, on a connection of its own.
  int64_t CountRows(const char* sql) {
    auto db = RawDb();
    Stmt s(db.get(), sql);
    return s.Step() ? s.Int(0) : -1;
  }
  // CountReaches polls CountRows(sql) until it is `want` (true), at most 5 s (false).
  bool CountReaches(const char* sql, int64_t want) {
    for (int i = 0; i < 100; ++i) {
      if (CountRows(sql) == want) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  void PurgeRemovesSettledBodiesOnly();
  // Unsealed is what Open without a log and without a key file is given.
  StoreOptions Unsealed() const {
    StoreOptions options;
    options.path = path_;
    options.postgres_dsn = dsn_;
    options.self = "360102";
    options.log_enabled = false;
    return options;
  }

  static PreparedNotice Prepared(const std::string& id, std::vector<std::string> dests,
                                 const std::string& content = "c") {
    v1::Notice n;
    n.set_notice_id(id);
    n.set_case_id(content);
    for (auto& d : dests) n.add_destinations(d);
    PreparedNotice p;
    p.notice_id = id;
    p.destinations = dests;
    p.bytes = n.SerializeAsString();
    p.digest = common::Sha256(p.bytes);
    return p;
  }

  static google::protobuf::Timestamp DueIn(absl::Duration d) {
    return google::protobuf::util::TimeUtil::SecondsToTimestamp(
        absl::ToUnixSeconds(common::Now() + d));
  }
  // Edited is `p` with its notice changed by `edit`, serialized again, with its facts.
  static PreparedNotice Edited(PreparedNotice p, const std::function<void(v1::Notice&)>& edit) {
    v1::Notice n;
    n.ParseFromString(p.bytes);
    edit(n);
    p.bytes = n.SerializeAsString();
    p.digest = common::Sha256(p.bytes);
    return WithFacts(std::move(p));
  }
  // Owing gives `p` a reply_due in 15 days, and the facts of its notice: it opens a to-do item.
  static PreparedNotice Owing(PreparedNotice p) {
    return Edited(std::move(p), [](v1::Notice& n) {
      *n.mutable_reply_due() = DueIn(absl::Hours(24 * 15));
    });
  }
  // ReplyTo is `p` made a reply to `origin`'s notice `notice_id`.
  static PreparedNotice ReplyTo(PreparedNotice p, const std::string& origin,
                                const std::string& notice_id) {
    return Edited(std::move(p), [&](v1::Notice& n) {
      n.set_in_reply_to(notice_id);
      n.set_in_reply_to_origin(origin);
    });
  }

  // VersionNineObligation is the to-do table of store versions 4 to 9 (keyed by origin, notice id
  // and peer) and its index, as kSchema (SQLite) or kPgSchema made them.
  static std::string VersionNineObligation(bool pg) {
    const std::string type = pg ? "BIGINT" : "INTEGER";
    return absl::StrCat(
        "CREATE TABLE obligation(origin TEXT NOT NULL, notice_id TEXT NOT NULL, peer TEXT NOT NULL, "
        "side ", type, " NOT NULL, case_id TEXT NOT NULL, kind TEXT NOT NULL, priority ", type,
        " NOT NULL, opened_at ", type, " NOT NULL, due ", type, " NOT NULL, stated_due ", type,
        ", state ", type, " NOT NULL, cleared_by TEXT, cleared_at ", type, ", superseded_by TEXT, "
        "PRIMARY KEY(origin, notice_id, peer))", pg ? "" : " WITHOUT ROWID",
        "; CREATE INDEX obligation_open ON obligation(due) WHERE state = 1; ");
  }

  // WithFacts gives `p` the facts of its notice (its case and subject, for the case index).
  static PreparedNotice WithFacts(PreparedNotice p) {
    v1::Notice n;
    n.ParseFromString(p.bytes);
    p.facts = common::FactsOf(n);
    return p;
  }

  // MakeBatch builds a batch from batch_origin_ to this node (360102); with `sign`, a manifest signed
  // by `origin_key_`; `edit` changes notices before they are serialized.
  v1::Batch MakeBatch(uint64_t first, int count, bool sign = false,
                      const std::function<void(v1::Notice&)>& edit = {}) {
    v1::Batch b;
    b.set_first_seq(first);
    v1::BatchManifest m;
    m.set_origin(batch_origin_);
    m.set_destination("360102");
    m.set_first_seq(first);
    m.set_last_seq(first + count - 1);
    for (int i = 0; i < count; ++i) {
      v1::Notice n;
      n.set_origin(batch_origin_);
      n.add_destinations("360102");
      n.set_notice_id("r-" + std::to_string(first + i));
      if (edit) edit(n);
      auto* e = b.add_entries();
      e->set_seq(first + i);
      e->set_notice(n.SerializeAsString());
      m.add_digests(common::Sha256(e->notice()));
    }
    if (sign) {
      b.mutable_manifest()->set_message(m.SerializeAsString());
      b.mutable_manifest()->set_signature(
          origin_key_->Sign(common::kManifestContext, b.manifest().message()));
    }
    return b;
  }

  Db::Backend backend_ = Db::Backend::kSqlite;
  std::string dir_, path_;
  std::string dsn_;  // the PostgreSQL database (StoreConformanceTest on PostgreSQL)
  std::string batch_origin_ = "440305";  // the origin of MakeBatch's batches
  // Receive does what the subscriber does with a delivered batch: checks it (a peer delivers only
  // its own notices, addressed here), then stores it with the receipt signed by this node's key.
  absl::StatusOr<std::optional<v1::Signed>> Receive(NoticeStore* store, const std::string& origin,
                                                    const v1::Batch& batch) {
    auto checked = common::CheckedBatch::Check(batch, origin, "360102");
    if (!checked.ok()) return checked.status();
    return store->StoreReceived(*checked, [this](absl::string_view message) {
      return key_->Sign(common::kReceiptContext, message);
    });
  }

  std::shared_ptr<const common::SigningKey> key_ = common::SigningKey::Generate();
  std::shared_ptr<const common::SigningKey> origin_key_ = common::SigningKey::Generate();
  std::shared_ptr<const Sealer> sealer_;  // set by UseSealer
  // When Open's store merges the case index (StoreOptions; the node's defaults unless a test says).
  absl::Duration case_merge_interval_ = StoreOptions().case_merge_interval;
  int64_t case_merge_rows_ = StoreOptions().case_merge_rows;
  int64_t wal_restart_bytes_ = StoreOptions().wal_restart_bytes;
};

// StoreConformanceTest is a test every backend must pass: each runs on SQLite and on PostgreSQL
// (a server this test binary starts in a temporary directory).
class StoreConformanceTest : public NoticeStoreTest,
                             public ::testing::WithParamInterface<Db::Backend> {
 protected:
  void SetUp() override {
    backend_ = GetParam();
    NoticeStoreTest::SetUp();
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformanceTest,
                         ::testing::Values(Db::Backend::kSqlite, Db::Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Db::Backend>& info) {
                           return info.param == Db::Backend::kSqlite ? "Sqlite" : "Postgres";
                         });

TEST_P(StoreConformanceTest, PublishAssignsContiguousSequencesPerChannel) {
  auto store = Open();
  auto r = store->Publish({Prepared("a", {"440305", "360111"}), Prepared("b", {"440305"})});
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].deliveries(0).seq(), 1u);
  EXPECT_EQ((*r)[0].deliveries(1).seq(), 1u);
  EXPECT_EQ((*r)[1].deliveries(0).seq(), 2u);
  EXPECT_EQ(store->Channel("440305").head, 2u);
  EXPECT_EQ(store->Channel("360111").head, 1u);
  auto entries = store->ReadChannel("440305", 1, 10, 1 << 20);
  ASSERT_OK(entries);
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[1].seq(), 2u);
  v1::Notice n;
  ASSERT_TRUE(n.ParseFromString((*entries)[1].notice()));
  EXPECT_EQ(n.notice_id(), "b");
}

// Continuous commits while a reader reads the channel, as subscriptions do: a PASSIVE
// checkpoint is always a little behind, and without the RESTART past wal_restart_bytes the WAL
// never started again and grew by every page written.
TEST_F(NoticeStoreTest, TheWalStartsAgainUnderContinuousCommits) {
  StoreOptions options;
  options.path = path_;
  options.self = "360102";
  options.log_enabled = false;
  options.wal_restart_bytes = 1 << 20;
  auto opened = NoticeStore::Open(options);
  ASSERT_OK(opened);
  auto store = std::move(*opened);
  std::atomic<bool> done{false};
  std::thread reader([&] {  // long reads, one after another
    while (!done) (void)store->ReadChannel("440305", 1, 2000, 1 << 24);
  });
  auto wal_bytes = [&] {
    struct stat st;
    return stat((path_ + "-wal").c_str(), &st) == 0 ? int64_t{st.st_size} : int64_t{0};
  };
  // The WAL header's checkpoint sequence (bytes 12..15, big-endian): SQLite adds one each time the
  // WAL starts again from its beginning.
  auto wal_restarts = [&] {
    std::ifstream in(path_ + "-wal", std::ios::binary);
    unsigned char h[16] = {0};
    in.read(reinterpret_cast<char*>(h), sizeof h);
    return in ? (uint32_t{h[12]} << 24 | uint32_t{h[13]} << 16 | uint32_t{h[14]} << 8 | h[15]) : 0u;
  };
  const std::string body(2000, 'x');
  const absl::Time start = absl::Now();
  int64_t after_1s = 0;
  uint32_t restarts_1s = 0;
  for (int i = 0; absl::Now() < start + absl::Seconds(6); i += 20) {
    std::vector<PreparedNotice> batch;
    for (int k = i; k < i + 20; ++k) batch.push_back(Prepared("w" + std::to_string(k), {"440305"}, body));
    if (absl::Status s = store->Publish(std::move(batch)).status(); !s.ok()) {
      ADD_FAILURE() << s;  // not ASSERT: the reader must be joined below
      break;
    }
    if (after_1s == 0 && absl::Now() > start + absl::Seconds(1)) {
      after_1s = wal_bytes();
      restarts_1s = wal_restarts();
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  done = true;
  reader.join();
  // The WAL started again after the first second (without the RESTART it never did), and did
  // not grow with the time: without the RESTART it grew about six times from the first second to
  // the sixth; with it, by the commits of the rounds a long read made it wait (3.2 times once, on
  // a loaded machine, when this bound was 3).
  ASSERT_GT(after_1s, 0);
  EXPECT_GT(wal_restarts(), restarts_1s) << "the WAL never started again after the first second";
  EXPECT_LT(wal_bytes(), 5 * after_1s) << "WAL after 1 s: " << after_1s << " bytes";
}

// SleepingThread reports whether this process's thread named `name` is asleep in nanosleep now
// (SQLite's busy handler sleeps so), from /proc/self/task/<tid>/syscall: the number of the
// system call it is blocked in (35 nanosleep, 230 clock_nanosleep; a mutex wait is 202, futex).
bool SleepingThread(const std::string& name) {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return false;
  bool sleeping = false;
  while (dirent* e = readdir(tasks)) {
    const std::string dir = std::string("/proc/self/task/") + e->d_name;
    std::ifstream comm(dir + "/comm");
    std::string thread;
    if (!std::getline(comm, thread) || thread != name) continue;
    std::ifstream syscall(dir + "/syscall");
    std::string number;
    syscall >> number;
    sleeping = number == "35" || number == "230";
  }
  closedir(tasks);
  return sleeping;
}

// A clean stop empties the WAL even when it comes while a checkpoint round is busy: here a
// RESTART waiting for a reader that holds a snapshot in the WAL. (The loop used to end at such a
// stop without its last round, and the WAL outlived the stop.)
TEST_F(NoticeStoreTest, ACleanStopEmptiesTheWalWhileACheckpointWaits) {
  wal_restart_bytes_ = 64 << 10;
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string body(2000, 'x');
  auto publish = [&](int from, int count) {
    std::vector<PreparedNotice> batch;
    for (int k = from; k < from + count; ++k) {
      batch.push_back(Prepared("s" + std::to_string(k), {"440305"}, body));
    }
    ASSERT_OK(store->Publish(std::move(batch)).status());
  };
  publish(0, 50);  // past wal_restart_bytes
  absl::SleepFor(absl::Milliseconds(600));  // a round has checkpointed them
  publish(50, 5);  // frames the reader's snapshot needs from the WAL
  auto reader = RawDb();
  ASSERT_OK(reader->Exec("BEGIN"));
  Stmt snapshot(reader.get(), "SELECT count(*) FROM notice");
  ASSERT_TRUE(snapshot.Step());
  EXPECT_EQ(snapshot.Int(0), 55);
  snapshot.Reset();  // the read transaction stays open until COMMIT
  publish(55, 5);
  // Until the checkpoint thread waits in the RESTART (its busy handler sleeps), at most 10 s.
  bool waiting = false;
  for (int i = 0; i < 10000 && !waiting; ++i) {
    waiting = SleepingThread("cw-checkpoint");
    if (!waiting) absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(waiting) << "the checkpoint never waited for the reader";
  // Stop now; the reader lets go a moment later.
  std::thread release([&] {
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_OK(reader->Exec("COMMIT"));
  });
  store.reset();
  release.join();
  struct stat st;
  ASSERT_EQ(stat((path_ + "-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0) << "the WAL outlived a clean stop";
}

TEST_P(StoreConformanceTest, ConcurrentPublishersNeverShareOrSkipASequence) {
  auto store = Open();
  constexpr int kThreads = 8, kEach = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        ASSERT_OK(store->Publish({Prepared("t" + std::to_string(t) + "-" + std::to_string(i),
                                           {"440305"})}));
      }
    });
  }
  for (auto& t : threads) t.join();
  auto entries = store->ReadChannel("440305", 1, 100000, 1ull << 40);
  ASSERT_OK(entries);
  ASSERT_EQ(entries->size(), static_cast<size_t>(kThreads * kEach));
  for (size_t i = 0; i < entries->size(); ++i) EXPECT_EQ((*entries)[i].seq(), i + 1);
}

TEST_P(StoreConformanceTest, IdenticalRepublishIsADuplicateAndDifferentContentIsRefusedWhole) {
  auto store = Open();
  ASSERT_OK(store->Publish({Prepared("a", {"440305"})}));
  auto again = store->Publish({Prepared("a", {"440305"})});
  ASSERT_OK(again);
  EXPECT_TRUE((*again)[0].duplicate());
  EXPECT_EQ((*again)[0].deliveries(0).seq(), 1u);
  // A batch with a conflicting id stores nothing, not even its valid members.
  EXPECT_THAT(store->Publish({Prepared("b", {"440305"}), Prepared("a", {"440305"}, "other")}),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("notices[1]")));
  EXPECT_EQ(store->Channel("440305").head, 1u);
  auto entries = store->ReadChannel("440305", 1, 10, 1 << 20);
  ASSERT_OK(entries);
  EXPECT_EQ(entries->size(), 1u);
}

TEST_P(StoreConformanceTest, ReopenKeepsEverythingCommitted) {
  {
    auto store = Open();
    ASSERT_OK(store->Publish({Prepared("a", {"440305"}), Prepared("b", {"440305"})}));
    ASSERT_OK(Receive(store.get(), "440305", MakeBatch(1, 3)));
    ASSERT_OK(store->RecordAck("440305", 2));
  }
  auto store = Open();
  EXPECT_EQ(store->Channel("440305").head, 2u);
  EXPECT_EQ(store->Channel("440305").acked, 2u);
  auto cursor = store->Cursor("440305");
  ASSERT_OK(cursor);
  EXPECT_EQ(*cursor, 3u);
  auto r = store->Publish({Prepared("c", {"440305"})});
  ASSERT_OK(r);
  EXPECT_EQ((*r)[0].deliveries(0).seq(), 3u);
}

TEST_P(StoreConformanceTest, ReceivedBatchMustStartAtCursorPlusOne) {
  auto store = Open();
  EXPECT_THAT(Receive(store.get(), "440305", MakeBatch(2, 2)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is not cursor+1")));
  ASSERT_OK(Receive(store.get(), "440305", MakeBatch(1, 2)));
  // Redelivery of what is stored is refused, so nothing enters the inbox twice.
  EXPECT_THAT(Receive(store.get(), "440305", MakeBatch(2, 2)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cursor 2")));
  v1::Batch broken = MakeBatch(3, 3);
  broken.mutable_entries(1)->set_seq(9);
  EXPECT_THAT(Receive(store.get(), "440305", broken),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("breaks contiguity")));
  v1::Batch garbage = MakeBatch(3, 1);
  garbage.mutable_entries(0)->set_notice("\xff\xff\xff");
  EXPECT_THAT(Receive(store.get(), "440305", garbage),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a parsable")));
  // A peer may deliver only its own notices, addressed to this node.
  EXPECT_THAT(Receive(store.get(), "360111", MakeBatch(1, 1)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is not the sending peer")));
  auto inbox = store->Inbox();
  ASSERT_OK(inbox);
  EXPECT_EQ(inbox->total, 2u);
}

TEST_P(StoreConformanceTest, InboxAcksAreDurableAndUnknownSeqsAreNamed) {
  auto store = Open();
  ASSERT_OK(Receive(store.get(), "440305", MakeBatch(1, 3)));
  auto rows = store->ReadInbox(0, 10);
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].origin, "440305");
  ASSERT_OK(store->AckInbox({(*rows)[0].inbox_seq, (*rows)[2].inbox_seq}));
  ASSERT_OK(store->AckInbox({(*rows)[0].inbox_seq}));  // acking twice is harmless
  EXPECT_THAT(store->AckInbox({999}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("999 is not in the inbox")));
  store.reset();
  store = Open();
  rows = store->ReadInbox(0, 10);
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].channel_seq, 2u);
}

// What `caseway status --check` and the metrics age: the oldest notice a destination has not
// acknowledged, the oldest the consumer has not taken, and the overdue to-do items per peer.
TEST_P(StoreConformanceTest, BacklogsAreDatedByTheirOldestNotice) {
  const absl::Time t0 = absl::FromCivil(absl::CivilSecond(2026, 3, 1, 8, 0, 0), absl::UTCTimeZone());
  caseway::testing::FakeClock clock(t0);
  caseway::testing::ScopedClock scoped(&clock);
  auto store = Open();
  ASSERT_OK(store->Publish({Prepared("a", {"440305"})}));
  clock.Advance(absl::Minutes(10));
  ASSERT_OK(store->Publish({Prepared("b", {"440305"})}));
  auto oldest = store->OldestUnacked();
  ASSERT_OK(oldest);
  EXPECT_EQ(oldest->at("440305"), t0);
  ASSERT_OK(store->RecordAck("440305", 1));
  oldest = store->OldestUnacked();
  ASSERT_OK(oldest);
  EXPECT_EQ(oldest->at("440305"), t0 + absl::Minutes(10));
  ASSERT_OK(store->RecordAck("440305", 2));
  oldest = store->OldestUnacked();
  ASSERT_OK(oldest);
  EXPECT_TRUE(oldest->empty());

  auto inbox = store->Inbox();
  ASSERT_OK(inbox);
  EXPECT_FALSE(inbox->oldest_unacked.has_value());
  clock.Advance(absl::Minutes(5));
  ASSERT_OK(Receive(store.get(), "440305", MakeBatch(1, 2)));
  clock.Advance(absl::Minutes(5));
  ASSERT_OK(Receive(store.get(), "440305", MakeBatch(3, 1)));
  auto rows = store->ReadInbox(0, 10);
  ASSERT_OK(rows);
  ASSERT_OK(store->AckInbox({(*rows)[0].inbox_seq}));
  inbox = store->Inbox();
  ASSERT_OK(inbox);
  EXPECT_EQ(inbox->total, 3u);
  EXPECT_EQ(inbox->unacked, 2u);
  EXPECT_EQ(inbox->oldest_unacked, t0 + absl::Minutes(15));
  ASSERT_OK(store->AckInbox({(*rows)[1].inbox_seq, (*rows)[2].inbox_seq}));
  inbox = store->Inbox();
  ASSERT_OK(inbox);
  EXPECT_FALSE(inbox->oldest_unacked.has_value());
}

TEST_P(StoreConformanceTest, ReadChannelNeverPassesTheByteBudgetButReturnsAtLeastOne) {
  auto store = Open();
  std::vector<PreparedNotice> many;
  for (int i = 0; i < 10; ++i) many.push_back(Prepared("n" + std::to_string(i), {"440305"}, std::string(1000, 'x')));
  ASSERT_OK(store->Publish(many));
  // Each entry is about 1,030 bytes with framing: two fit in 3,000, a third would pass the budget
  // (and a batch over the transport limit would block the channel for good).
  auto few = store->ReadChannel("440305", 1, 100, 3000);
  ASSERT_OK(few);
  EXPECT_EQ(few->size(), 2u);
  auto one = store->ReadChannel("440305", 1, 100, 1);
  ASSERT_OK(one);
  EXPECT_EQ(one->size(), 1u);
}

TEST_P(StoreConformanceTest, LogRecordsEveryEventAndItsRootSurvivesReopen) {
  std::pair<uint64_t, std::string> head;
  {
    auto store = Open(/*log=*/true);
    ASSERT_OK(store->Publish({Prepared("a", {"440305"}), Prepared("b", {"440305"})}));
    auto receipt = Receive(store.get(), "440305", MakeBatch(1, 3, /*sign=*/true));
    ASSERT_OK(receipt);
    ASSERT_TRUE(receipt->has_value());
    // The receipt is signed with our key in the receipt context and names the RECEIVED entry.
    EXPECT_OK(common::VerifySignature(key_->PublicKey(), common::kReceiptContext,
                                      (*receipt)->message(), (*receipt)->signature()));
    v1::Receipt r;
    ASSERT_TRUE(r.ParseFromString((*receipt)->message()));
    EXPECT_EQ(r.log_index(), 2u);
    EXPECT_EQ(r.last_seq(), 3u);
    head = store->LogHead();
    EXPECT_EQ(head.first, 3u);  // 2 PUBLISHED + 1 RECEIVED
    auto entries = store->ReadEntries(0, 3);
    ASSERT_OK(entries);
    common::MerkleFrontier rebuilt;
    for (const auto& e : *entries) rebuilt.Append(common::LeafHash(e));
    EXPECT_EQ(rebuilt.Root(), head.second);
    v1::LogEntry last;
    ASSERT_TRUE(last.ParseFromString((*entries)[2]));
    EXPECT_EQ(last.kind(), v1::LogEntry::KIND_RECEIVED);
    EXPECT_EQ(last.index(), 2u);
    auto sent = store->ReceiptsSent("440305", 0);
    ASSERT_OK(sent);
    ASSERT_EQ(sent->size(), 1u);
    EXPECT_EQ((*sent)[0].second.message(), (*receipt)->message());
  }
  auto store = Open(/*log=*/true);
  EXPECT_EQ(store->LogHead(), head);
  ASSERT_OK(store->Publish({Prepared("c", {"440305"})}));
  auto proof = store->ConsistencyProof(3, 4);
  ASSERT_OK(proof);
  EXPECT_OK(common::VerifyConsistency(3, 4, *proof, head.second, store->LogHead().second));
}

TEST_P(StoreConformanceTest, RolledBackOperationLeavesTheLogUntouched) {
  auto store = Open(/*log=*/true);
  ASSERT_OK(store->Publish({Prepared("a", {"440305"})}));
  auto before = store->LogHead();
  // The second notice conflicts: the whole call rolls back, including the first's PUBLISHED entry.
  EXPECT_FALSE(store->Publish({Prepared("b", {"440305"}), Prepared("a", {"440305"}, "x")}).ok());
  EXPECT_EQ(store->LogHead(), before);
  ASSERT_OK(store->Publish({Prepared("b", {"440305"})}));
  auto entries = store->ReadEntries(0, 10);
  ASSERT_OK(entries);
  ASSERT_EQ(entries->size(), 2u);
  common::MerkleFrontier rebuilt;
  for (const auto& e : *entries) rebuilt.Append(common::LeafHash(e));
  EXPECT_EQ(rebuilt.Root(), store->LogHead().second);
}

TEST_P(StoreConformanceTest, WithTheLogOnABatchNeedsItsManifest) {
  auto store = Open(/*log=*/true);
  EXPECT_THAT(Receive(store.get(), "440305", MakeBatch(1, 2)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("batch.manifest")));
  EXPECT_EQ(store->LogHead().first, 0u);
}

// With the log on, the store signs receipts only through its caller's Signer: a batch stored
// without one is refused before anything is written.
TEST_P(StoreConformanceTest, WithTheLogOnAReceiptNeedsTheCallersSigner) {
  auto store = Open(/*log=*/true);
  const v1::Batch batch = MakeBatch(1, 2, /*sign=*/true);
  auto checked = common::CheckedBatch::Check(batch, "440305", "360102");
  ASSERT_OK(checked);
  EXPECT_THAT(store->StoreReceived(*checked, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no signer was given")));
  EXPECT_EQ(*store->Cursor("440305"), 0u);
  EXPECT_EQ(store->LogHead().first, 0u);
  ASSERT_OK(Receive(store.get(), "440305", batch));
  EXPECT_EQ(*store->Cursor("440305"), 2u);
}

// A batch checked for another node is not this store's to take.
TEST_P(StoreConformanceTest, ABatchCheckedForAnotherNodeIsRefused) {
  auto store = Open();
  v1::Batch batch = MakeBatch(1, 1);
  v1::Notice n;
  ASSERT_TRUE(n.ParseFromString(batch.entries(0).notice()));
  n.add_destinations("360111");
  batch.mutable_entries(0)->set_notice(n.SerializeAsString());
  auto checked = common::CheckedBatch::Check(batch, "440305", "360111");
  ASSERT_OK(checked);
  EXPECT_THAT(store->StoreReceived(*checked, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("checked for 360111")));
  EXPECT_EQ(*store->Cursor("440305"), 0u);
}

// A database made by a newer binary (a rollback after an upgrade) is refused, and left as it was:
// not one table of this version is created in it.
TEST_F(NoticeStoreTest, ANewerDatabaseIsRefusedUntouched) {
  {
    auto db = SqliteDb::Open(path_);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Exec("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                          "INSERT INTO meta VALUES('schema_version', '99');"
                          "CREATE TABLE notice_v99(notice_id TEXT PRIMARY KEY);"));
  }
  EXPECT_THAT(NoticeStore::Open(Unsealed()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("schema version 99 is newer than this binary's")));
  auto db = SqliteDb::Open(path_);
  ASSERT_OK(db);
  Stmt tables(db->get(), "SELECT group_concat(name, ',') FROM sqlite_master WHERE type = 'table'");
  ASSERT_TRUE(tables.Step());
  EXPECT_EQ(tables.Text(0), "meta,notice_v99");
}

TEST_F(NoticeStoreTest, VersionTwoDatabaseIsMigrated) {
  {
    // A version-2 database: no notice.deliveries, sequences found through an index.
    auto db = SqliteDb::Open(path_);
    ASSERT_OK(db);
    ASSERT_OK((*db)->Exec(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES('schema_version', '2');"
        "CREATE TABLE notice(notice_id TEXT PRIMARY KEY, digest BLOB NOT NULL, bytes BLOB NOT NULL,"
        "  published_at INTEGER NOT NULL);"
        "CREATE TABLE channel(destination TEXT PRIMARY KEY, head INTEGER NOT NULL,"
        "  acked INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE channel_entry(destination TEXT NOT NULL, seq INTEGER NOT NULL,"
        "  notice_id TEXT NOT NULL REFERENCES notice(notice_id), PRIMARY KEY(destination, seq))"
        "  WITHOUT ROWID;"
        "CREATE UNIQUE INDEX channel_entry_by_notice ON channel_entry(notice_id, destination);"));
  }
  PreparedNotice a = Prepared("a", {"440305"});
  {
    auto db = SqliteDb::Open(path_);
    ASSERT_OK(db);
    Stmt s(db->get(), "INSERT INTO notice VALUES(?, ?, ?, 0)");
    s.Bind(1, a.notice_id).BindBlob(2, a.digest).BindBlob(3, a.bytes);
    s.Step();
    ASSERT_OK(s.status("insert"));
    ASSERT_OK((*db)->Exec("INSERT INTO channel_entry VALUES('440305', 7, 'a');"
                          "INSERT INTO channel VALUES('440305', 7, 0);"));
  }
  auto store = Open();
  // Version 5 indexes the notices already stored by case (and subject).
  bool truncated = true;
  auto found = store->FindCase("c", /*by_subject=*/false, 10, &truncated);
  ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].notice_id, "a");
  EXPECT_EQ((*found)[0].role, v1::QueryNotice::ROLE_PUBLISHED);
  EXPECT_EQ((*found)[0].deliveries,
            (std::vector<std::pair<std::string, uint64_t>>{{"440305", 7}}));
  EXPECT_FALSE(truncated);
  auto again = store->Publish({a});
  ASSERT_OK(again);
  EXPECT_TRUE((*again)[0].duplicate());
  ASSERT_EQ((*again)[0].deliveries_size(), 1);
  EXPECT_EQ((*again)[0].deliveries(0).seq(), 7u);
  auto next = store->Publish({Prepared("b", {"440305"})});
  ASSERT_OK(next);
  EXPECT_EQ((*next)[0].deliveries(0).seq(), 8u);
}

// Every earlier schema migrates: a database made with each version's exact DDL (as that
// version's caseway-node created it, tests/testdata/schemas/) and filled with the rows that
// version had (copied from a database this version filled) opens, keeps every notice, channel
// position, inbox row and log entry, and goes on where it stopped.
TEST_F(NoticeStoreTest, EveryEarlierSchemaMigrates) {
  const std::string source = path_;
  std::pair<uint64_t, std::string> log_head;
  {
    auto store = Open(/*log=*/true);
    ASSERT_OK(store->Publish({WithFacts(Prepared("m-1", {"440305"}, "case-1")),
                              WithFacts(Prepared("m-2", {"440305", "110101"}, "case-2"))})
                  .status());
    // m-3 and r-2 owe replies: one to-do item on each side.
    ASSERT_OK(store->Publish({Owing(Prepared("m-3", {"440305"}, "case-1"))}).status());
    ASSERT_OK(Receive(store.get(), "440305", MakeBatch(1, 3, /*sign=*/true, [](v1::Notice& n) {
                if (n.notice_id() == "r-2") *n.mutable_reply_due() = DueIn(absl::Hours(24 * 15));
              })).status());
    auto rows = store->ReadInbox(0, 10);
    ASSERT_OK(rows.status());
    ASSERT_EQ(rows->size(), 3u);
    ASSERT_OK(store->AckInbox({(*rows)[0].inbox_seq}));
    log_head = store->LogHead();
    ASSERT_EQ(log_head.first, 4u);  // three PUBLISHED, one RECEIVED
  }
  const char* src = getenv("CASEWAY_SOURCE_DIR");
  const std::string schemas = std::string(src ? src : CASEWAY_DEFAULT_SOURCE_DIR) + "/tests/testdata/schemas";
  for (int version : {1, 2, 3, 4, 9}) {
    SCOPED_TRACE(absl::StrCat("schema version ", version));
    path_ = absl::StrCat(dir_, "/v", version, ".db");
    {
      auto ddl = common::ReadFile(absl::StrCat(schemas, "/schema-v", version, ".sql"));
      ASSERT_OK(ddl.status());
      auto db = SqliteDb::Open(path_);
      ASSERT_OK(db);
      ASSERT_OK((*db)->Exec(ddl->c_str()));
      ASSERT_OK((*db)->Exec(absl::StrCat("INSERT INTO meta VALUES('schema_version', '", version,
                                         "'); ATTACH '", source, "' AS src;")
                                .c_str()));
      // Each table of that version gets the rows of the columns it had.
      std::vector<std::string> tables;
      {
        Stmt t(db->get(),
               "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT IN "
               "('meta', 'sqlite_sequence')");
        while (t.Step()) tables.push_back(t.Text(0));
        ASSERT_OK(t.status("tables"));
      }
      for (const std::string& table : tables) {
        Stmt c(db->get(), absl::StrCat("SELECT group_concat(name, ',') FROM pragma_table_info('",
                                          table, "', 'main')")
                                 .c_str());
        ASSERT_TRUE(c.Step());
        const std::string columns = c.Text(0);
        ASSERT_OK((*db)->Exec(absl::StrCat("INSERT INTO main.", table, "(", columns, ") SELECT ",
                                           columns, " FROM src.", table)
                                  .c_str()));
      }
      // From version 5, meta holds more than the version: the case index's salt, the access key.
      if (version >= 5) {
        ASSERT_OK((*db)->Exec(
            "INSERT INTO main.meta SELECT * FROM src.meta WHERE key <> 'schema_version'"));
      }
      ASSERT_OK((*db)->Exec("DETACH src;"));
    }
    auto store = Open(/*log=*/true);
    ASSERT_NE(store, nullptr);
    // The channels continue: a notice published before is a duplicate with its sequences, the
    // next one follows the last.
    auto again = store->Publish({Prepared("m-2", {"440305", "110101"}, "case-2")});
    ASSERT_OK(again.status());
    ASSERT_TRUE((*again)[0].duplicate());
    ASSERT_EQ((*again)[0].deliveries_size(), 2);
    EXPECT_EQ((*again)[0].deliveries(0).seq(), 2u);
    EXPECT_EQ((*again)[0].deliveries(1).seq(), 1u);
    // The case index is built for the notices already held.
    bool truncated = true;
    auto found = store->FindCase("case-1", /*by_subject=*/false, 10, &truncated);
    ASSERT_OK(found.status());
    EXPECT_EQ(found->size(), 2u);
    // The inbox keeps what was taken and what was not; the cursor goes on.
    auto inbox = store->Inbox();
    ASSERT_OK(inbox.status());
    EXPECT_EQ(inbox->total, 3u);
    EXPECT_EQ(inbox->unacked, 2u);
    auto cursor = store->Cursor("440305");
    ASSERT_OK(cursor.status());
    EXPECT_EQ(*cursor, 3u);
    // Version 1 had no exchange log: it starts empty. Later ones keep every entry, unchanged.
    const uint64_t kept = version == 1 ? 0 : log_head.first;
    auto head = store->LogHead();
    EXPECT_EQ(head.first, kept);
    if (version > 1) {
      EXPECT_EQ(head.second, log_head.second);
    }
    common::MerkleFrontier frontier;
    ASSERT_OK(store->VerifyStored(frontier, head.first));
    auto next = store->Publish({Prepared("m-4", {"440305"}, "case-4")});
    ASSERT_OK(next.status());
    EXPECT_EQ((*next)[0].deliveries(0).seq(), 4u);
    EXPECT_EQ(store->LogHead().first, kept + 1);
    // Versions 4 to 9 kept the to-do items under (origin, notice id, peer); version 10 keys them
    // by channel position. Each item is still listed, and the reply that settles it finds it.
    if (version < 4) continue;  // no to-do list before version 4
    v1::TodoRequest all;
    all.set_include_cleared(true);
    auto todo = store->Todo(all, common::Now());
    ASSERT_OK(todo.status());
    ASSERT_EQ(todo->items_size(), 2);
    EXPECT_EQ(todo->owed_by_us(), 1u);
    EXPECT_EQ(todo->owed_to_us(), 1u);
    std::map<std::string, v1::TodoItem> items;
    for (const auto& item : todo->items()) items[item.notice_id()] = item;
    ASSERT_EQ(items.count("m-3"), 1u);
    ASSERT_EQ(items.count("r-2"), 1u);
    EXPECT_EQ(items["m-3"].side(), v1::TodoRequest::SIDE_OWED_TO_US);
    EXPECT_EQ(items["m-3"].origin(), "360102");
    EXPECT_EQ(items["m-3"].peer(), "440305");
    EXPECT_EQ(items["r-2"].side(), v1::TodoRequest::SIDE_OWED_BY_US);
    EXPECT_EQ(items["r-2"].origin(), "440305");
    // 440305 answers m-3; this node answers r-2.
    ASSERT_OK(Receive(store.get(), "440305", MakeBatch(4, 1, /*sign=*/true, [](v1::Notice& n) {
                n.set_in_reply_to("m-3");
              })).status());
    ASSERT_OK(store->Publish({ReplyTo(Prepared("m-5", {"440305"}, "case-1"), "440305", "r-2")})
                  .status());
    auto settled = store->Todo(all, common::Now());
    ASSERT_OK(settled.status());
    EXPECT_EQ(settled->owed_by_us(), 0u);
    EXPECT_EQ(settled->owed_to_us(), 0u);
    ASSERT_EQ(settled->items_size(), 2);
    for (const auto& item : settled->items()) {
      EXPECT_EQ(item.state(), v1::TodoItem::STATE_ANSWERED) << item.notice_id();
      EXPECT_EQ(item.cleared_by(), item.notice_id() == "m-3" ? "r-4" : "m-5");
    }
    auto replies = store->RepliesOf("360102", "m-3", common::Now());
    ASSERT_OK(replies.status());
    ASSERT_EQ(replies->size(), 1u);
    EXPECT_EQ((*replies)[0].cleared_by(), "r-4");
  }
}

// A store of version 9 (to-do items keyed by origin, notice id and peer) opens at version 10 (keyed
// by channel position) with every item, on either backend: each gets its own channel's seq (not
// the inbox's, not another destination's; a notice received twice keeps one item, at the first),
// is listed as before, and the reply or void that settles it finds it. The version-9 table is
// rebuilt here from a store of this version.
TEST_P(StoreConformanceTest, VersionNineToDoItemsMigrate) {
  auto owes = [](v1::Notice& n) { *n.mutable_reply_due() = DueIn(absl::Hours(24 * 15)); };
  {
    auto store = Open(/*log=*/true);
    ASSERT_OK(store->Publish({WithFacts(Prepared("t-0", {"440305"}, "case-t"))}).status());
    ASSERT_OK(store->Publish({Owing(Prepared("t-1", {"440305", "110101"}, "case-t")),
                              WithFacts(Prepared("t-2", {"440305"}, "case-t"))})
                  .status());  // 440305: t-0 1, t-1 2, t-2 3; 110101: t-1 1
    // 110101 sends first (the same notice ids, owing nothing), so that 440305's notices are not
    // at their channel seqs in the inbox.
    batch_origin_ = "110101";
    ASSERT_OK(Receive(store.get(), "110101", MakeBatch(1, 2, /*sign=*/true)).status());
    batch_origin_ = "440305";
    ASSERT_OK(Receive(store.get(), "440305", MakeBatch(1, 2, /*sign=*/true, [&](v1::Notice& n) {
                if (n.notice_id() == "r-2") owes(n);
              })).status());  // inbox 3, 4
    // 440305 sends r-2 again, on seq 3: still one item, at seq 2.
    ASSERT_OK(Receive(store.get(), "440305", MakeBatch(3, 1, /*sign=*/true, [&](v1::Notice& n) {
                n.set_notice_id("r-2");
                owes(n);
              })).status());
    EXPECT_EQ(CountRows("SELECT count(*) FROM obligation"), 3);
  }
  {
    auto db = RawDb();
    ASSERT_NE(db, nullptr);
    const bool pg = backend_ == Db::Backend::kPostgres;
    const char* rest = "case_id, kind, priority, opened_at, due, stated_due, state, cleared_by, "
                       "cleared_at, superseded_by";
    ASSERT_OK(db->Exec(pg ? "DROP INDEX obligation_open; ALTER TABLE obligation RENAME TO o10; "
                            "ALTER INDEX obligation_pkey RENAME TO o10_pkey;"
                          : "DROP INDEX obligation_open; ALTER TABLE obligation RENAME TO o10;"));
    ASSERT_OK(db->Exec(absl::StrCat(
        VersionNineObligation(pg),
        "INSERT INTO obligation(origin, notice_id, peer, side, ", rest, ") SELECT origin, "
        "notice_id, peer, side, ", rest, " FROM o10; DROP TABLE o10; "
        "UPDATE meta SET value = '9' WHERE key = 'schema_version';").c_str()));
  }
  auto store = Open(/*log=*/true);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(CountRows("SELECT count(*) FROM obligation"), 3);
  EXPECT_EQ(CountRows("SELECT count(*) FROM obligation WHERE peer = '440305' AND side = 2 AND "
                      "seq = 2 AND notice_id = 't-1'"), 1);
  EXPECT_EQ(CountRows("SELECT count(*) FROM obligation WHERE peer = '110101' AND side = 2 AND "
                      "seq = 1 AND notice_id = 't-1'"), 1);
  EXPECT_EQ(CountRows("SELECT count(*) FROM obligation WHERE peer = '440305' AND side = 1 AND "
                      "seq = 2 AND notice_id = 'r-2' AND origin = '440305'"), 1);
  v1::TodoRequest all;
  all.set_include_cleared(true);
  auto todo = store->Todo(all, common::Now());
  ASSERT_OK(todo.status());
  EXPECT_EQ(todo->owed_to_us(), 2u);  // t-1 at 440305 and at 110101
  EXPECT_EQ(todo->owed_by_us(), 1u);  // r-2
  ASSERT_EQ(todo->items_size(), 3);
  // 440305 answers t-1; then this node voids t-1: the void settles what 110101 still owed.
  ASSERT_OK(Receive(store.get(), "440305", MakeBatch(4, 1, /*sign=*/true, [](v1::Notice& n) {
              n.set_in_reply_to("t-1");
            })).status());
  const PreparedNotice retract =
      Edited(ReplyTo(Prepared("t-3", {"440305", "110101"}, "case-t"), "360102", "t-1"),
             [](v1::Notice& n) { n.mutable_void_()->set_reason("sent by mistake"); });
  ASSERT_OK(store->Publish({retract}).status());
  auto replies = store->RepliesOf("360102", "t-1", common::Now());
  ASSERT_OK(replies.status());
  ASSERT_EQ(replies->size(), 2u);
  EXPECT_EQ((*replies)[0].peer(), "110101");  // in peer order
  EXPECT_EQ((*replies)[0].state(), v1::TodoItem::STATE_VOIDED);
  EXPECT_EQ((*replies)[0].cleared_by(), "t-3");
  EXPECT_EQ((*replies)[1].peer(), "440305");
  EXPECT_EQ((*replies)[1].state(), v1::TodoItem::STATE_ANSWERED);  // the first settlement stands
  EXPECT_EQ((*replies)[1].cleared_by(), "r-4");
  // This node owes 440305 a reply to r-2 (one item for its two copies); its reply settles it.
  auto owed = store->RepliesOf("440305", "r-2", common::Now());
  ASSERT_OK(owed.status());
  ASSERT_EQ(owed->size(), 1u);
  EXPECT_EQ(owed->front().state(), v1::TodoItem::STATE_OPEN);
  EXPECT_EQ(owed->front().side(), v1::TodoRequest::SIDE_OWED_BY_US);
  ASSERT_OK(
      store->Publish({ReplyTo(Prepared("t-4", {"440305"}, "case-t"), "440305", "r-2")}).status());
  auto answered = store->RepliesOf("440305", "r-2", common::Now());
  ASSERT_OK(answered.status());
  ASSERT_EQ(answered->size(), 1u);
  EXPECT_EQ(answered->front().state(), v1::TodoItem::STATE_ANSWERED);
  EXPECT_EQ(answered->front().cleared_by(), "t-4");
  EXPECT_TRUE(store->RepliesOf("110101", "r-2", common::Now())->empty());  // 110101's r-2 owes none
}

// A to-do item of version 9 whose notice the database does not hold cannot be keyed by channel
// position: the store refuses to open and names the table and the count; the to-do table and the
// schema version stay as they were (SQLite and PostgreSQL).
TEST_P(StoreConformanceTest, AVersionNineToDoItemWithoutItsNoticeStopsTheMigration) {
  { ASSERT_NE(Open(/*log=*/true), nullptr); }
  {
    auto db = RawDb();
    ASSERT_NE(db, nullptr);
    ASSERT_OK(db->Exec(absl::StrCat(
        "DROP TABLE obligation; ", VersionNineObligation(backend_ == Db::Backend::kPostgres),
        "INSERT INTO obligation VALUES('360102', 'gone', '440305', 2, 'c', '', 0, 1, 2, NULL, 1, "
        "NULL, NULL, NULL); UPDATE meta SET value = '9' WHERE key = 'schema_version';").c_str()));
  }
  auto opened = NoticeStore::Open(Unsealed());
  EXPECT_THAT(opened.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("obligation: 1 of 1 to-do items")));
  EXPECT_EQ(CountRows("SELECT count(*) FROM obligation WHERE notice_id = 'gone'"), 1);
  EXPECT_EQ(CountRows("SELECT count(seq) FROM obligation"), -1);  // no such column: version 9's
  EXPECT_EQ(CountRows("SELECT count(*) FROM meta WHERE key = 'schema_version' AND value = '9'"), 1);
}

// Retention removes the bodies of what is settled (acknowledged everywhere, taken by the
// consumer, no reply open), keeps everything else and every proof, and comes back for what was
// not settled yet.
void NoticeStoreTest::PurgeRemovesSettledBodiesOnly() {
  auto store = Open(/*log=*/true);
  const PreparedNotice owed = Owing(Prepared("p-owed", {"440305"}, "case-r"));
  const PreparedNotice plain = WithFacts(Prepared("p-plain", {"440305"}, "case-r"));
  const PreparedNotice two = WithFacts(Prepared("p-two", {"440305", "110101"}, "case-r"));
  ASSERT_OK(store->Publish({owed, plain, two}).status());  // 440305: 1, 2, 3; 110101: 1
  ASSERT_OK(Receive(store.get(), "440305", MakeBatch(1, 3, /*sign=*/true)).status());
  auto rows = store->ReadInbox(0, 10);
  ASSERT_OK(rows.status());
  ASSERT_EQ(rows->size(), 3u);
  v1::Notice received;
  ASSERT_TRUE(received.ParseFromString((*rows)[2].bytes));  // read back plain, sealed or not
  EXPECT_EQ(received.notice_id(), "r-3");
  EXPECT_EQ(SealedRows("notice", "bytes"), sealer_ ? 3 : 0);
  EXPECT_EQ(SealedRows("inbox", "bytes"), sealer_ ? 3 : 0);
  ASSERT_OK(store->AckInbox({(*rows)[0].inbox_seq, (*rows)[1].inbox_seq}));
  const auto head = store->LogHead();
  {
    common::MerkleFrontier before_purge;
    ASSERT_OK(store->VerifyStored(before_purge, head.first));
  }
  const absl::Time later = common::Now() + absl::Seconds(1);

  // Nothing published is acknowledged yet: only the two received notices the consumer took.
  auto first = store->Purge(later, 1000);
  ASSERT_OK(first.status());
  EXPECT_EQ(first->published, 0u);
  EXPECT_EQ(first->received, 2u);
  EXPECT_FALSE(first->more);
  auto inbound = store->ReadNotices("440305", /*outbound=*/false, 1, 10, 1 << 20);
  ASSERT_OK(inbound.status());
  ASSERT_EQ(inbound->size(), 3u);
  EXPECT_TRUE((*inbound)[0].second.empty());
  EXPECT_TRUE((*inbound)[1].second.empty());
  EXPECT_FALSE((*inbound)[2].second.empty());  // not taken yet: kept

  // 440305 acknowledges everything; 110101 nothing. The notice owed a reply stays, and so does
  // the one 110101 has not acknowledged.
  ASSERT_OK(store->RecordAck("440305", 3));
  auto second = store->Purge(later, 1000);
  ASSERT_OK(second.status());
  EXPECT_EQ(second->published, 1u);
  auto evidence = store->NoticeEvidence("p-plain", "");
  ASSERT_OK(evidence.status());
  EXPECT_TRUE(evidence->purged());
  EXPECT_TRUE(evidence->notice().empty());
  EXPECT_FALSE(evidence->channels().empty());  // the manifests and receipts that prove it stay
  auto owed_evidence = store->NoticeEvidence("p-owed", "");
  ASSERT_OK(owed_evidence.status());
  EXPECT_FALSE(owed_evidence->purged());
  bool truncated = false;
  auto found = store->FindCase("case-r", /*by_subject=*/false, 10, &truncated);
  ASSERT_OK(found.status());
  ASSERT_EQ(found->size(), 2u);  // p-owed and p-two: the purged one is no longer found
  // A destination asking again for what it acknowledged is refused, not sent an empty notice.
  EXPECT_THAT(store->ReadChannel("440305", 2, 10, 1 << 20).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("purged")));

  // Once 110101 acknowledges, the next pass comes back for p-two (one row per call: resumable).
  ASSERT_OK(store->RecordAck("110101", 1));
  auto one = store->Purge(later, 1);
  ASSERT_OK(one.status());
  EXPECT_TRUE(one->more);
  uint64_t purged = one->published;
  for (int i = 0; i < 10 && purged < 1; ++i) {
    auto next = store->Purge(later, 1);
    ASSERT_OK(next.status());
    purged += next->published;
  }
  EXPECT_EQ(purged, 1u);
  EXPECT_TRUE(store->NoticeEvidence("p-two", "")->purged());
  EXPECT_FALSE(store->NoticeEvidence("p-owed", "")->purged());
  // Purging appends nothing to the log and every stored entry still verifies.
  EXPECT_EQ(store->LogHead(), head);
  common::MerkleFrontier frontier;
  ASSERT_OK(store->VerifyStored(frontier, head.first));
  EXPECT_EQ(frontier.Root(), head.second);
  // Nothing younger than the cut-off is touched.
  ASSERT_OK(store->Publish({Prepared("p-new", {"440305"})}).status());
  ASSERT_OK(store->RecordAck("440305", 4));
  auto young = store->Purge(common::Now() - absl::Hours(1), 1000);
  ASSERT_OK(young.status());
  EXPECT_EQ(young->published + young->received + young->answers, 0u);
}

TEST_P(StoreConformanceTest, PurgeRemovesSettledBodiesOnlyAndKeepsTheLog) { PurgeRemovesSettledBodiesOnly(); }

// Sealed bodies (storage.key_file) are read, indexed, served and purged like plain ones.
TEST_P(StoreConformanceTest, SealedBodiesArePurgedAndReadLikePlainOnes) {
  UseSealer();
  PurgeRemovesSettledBodiesOnly();
}

// Sealed data is never opened without its key, nor returned sealed.
TEST_P(StoreConformanceTest, ADatabaseWithSealedDataNeedsItsKey) {
  UseSealer();
  {
    auto store = Open();
    ASSERT_OK(store->Publish({Prepared("a", {"440305"})}).status());
  }
  sealer_.reset();
  EXPECT_THAT(NoticeStore::Open(Unsealed()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("personal data here is sealed (encrypted at rest) with key 1")));
}

// A destination's copy under the sharing policy is sealed under its (destination, notice id)
// name and delivered open; one sealed under the older (destination, seq) name still opens, and
// reseal moves it to the current name.
TEST_F(NoticeStoreTest, ASealedCopyIsDeliveredAndOneUnderItsOlderNameStillOpens) {
  UseSealer();
  PreparedNotice p = Prepared("a", {"440305"});
  p.copies = {"the copy for 440305"};
  {
    auto store = Open();
    ASSERT_OK(store->Publish({p}).status());
    auto entries = store->ReadChannel("440305", 1, 10, 1 << 20);
    ASSERT_OK(entries);
    ASSERT_EQ(entries->size(), 1u);
    EXPECT_EQ((*entries)[0].notice(), "the copy for 440305");
  }
  EXPECT_EQ(SealedRows("shared_copy", "bytes"), 1);
  auto raw = [&] {
    auto db = SqliteDb::Open(path_);
    Stmt s(db->get(), "SELECT bytes FROM shared_copy");
    return s.Step() ? std::string(s.Blob(0)) : std::string();
  };
  EXPECT_OK(sealer_->Open(raw(), CopyContext("440305", "a")).status());
  {
    auto db = SqliteDb::Open(path_);
    Stmt s(db->get(), "UPDATE shared_copy SET bytes = ?");
    s.BindBlob(1, sealer_->Seal("the copy for 440305", LegacyCopyContext("440305", 1)));
    while (s.Step()) {
    }
    ASSERT_OK(s.status("legacy copy"));
  }
  {
    auto store = Open();
    auto entries = store->ReadChannel("440305", 1, 10, 1 << 20);
    ASSERT_OK(entries);
    ASSERT_EQ(entries->size(), 1u);
    EXPECT_EQ((*entries)[0].notice(), "the copy for 440305");
  }
  ASSERT_OK(ResealDatabase(path_, *sealer_).status());
  EXPECT_OK(sealer_->Open(raw(), CopyContext("440305", "a")).status());
}

// A restored node holds the channels to destinations it could not ask (serve_only peers): new
// notices to them are refused until each confirms by subscribing; a retry of a notice already
// stored is still answered; the confirmation is recorded in the restore mark.
TEST_P(StoreConformanceTest, AHeldChannelTakesNothingNewUntilItsDestinationConfirms) {
  auto store = Open();
  ASSERT_OK(store->Publish({Prepared("h-1", {"440305"})}).status());
  {
    auto db = RawDb();
    ASSERT_OK(db->Exec("INSERT INTO meta(key, value) VALUES('backup_taken_at', '1700000000000000')"));
  }
  auto mark = store->RestoredFrom();
  ASSERT_OK(mark.status());
  ASSERT_TRUE(mark->has_value());
  EXPECT_FALSE((*mark)->checked);
  EXPECT_EQ((*mark)->taken_at, absl::FromUnixSeconds(1700000000));
  ASSERT_OK(store->SetRestoreChecked({"440305", "110101"}));
  store->HoldChannels({"440305", "110101"});
  EXPECT_THAT(store->Publish({Prepared("h-2", {"440305"})}).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("notices[0].destinations: the channel to 440305 awaits 440305's "
                                 "confirmation after this node was restored")));
  auto retry = store->Publish({Prepared("h-1", {"440305"})});
  ASSERT_OK(retry.status());
  EXPECT_TRUE((*retry)[0].duplicate());
  store->ConfirmChannel("440305");
  auto next = store->Publish({Prepared("h-2", {"440305"})});
  ASSERT_OK(next.status());
  EXPECT_EQ((*next)[0].deliveries(0).seq(), 2u);
  EXPECT_THAT(store->Publish({Prepared("h-3", {"110101"})}).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("110101")));
  store->Barrier();
  mark = store->RestoredFrom();
  ASSERT_OK(mark.status());
  ASSERT_TRUE(mark->has_value());
  EXPECT_TRUE((*mark)->checked);
  EXPECT_EQ((*mark)->unconfirmed, std::set<std::string>{"110101"});
  store->ConfirmChannel("110101");
  store->Barrier();
  mark = store->RestoredFrom();
  ASSERT_OK(mark.status());
  EXPECT_FALSE(mark->has_value());  // every destination confirmed: the mark is gone
}

// A notice is found by case and by subject as soon as it is committed (its index rows wait in
// case_index_new and in memory), across a reopen before the merge, and after the merge moved
// them into case_index.
TEST_P(StoreConformanceTest, CasesAreFoundBeforeAndAfterTheIndexMerges) {
  auto prepared = [](const std::string& id, const std::string& case_id, const std::string& idn) {
    PreparedNotice p = Prepared(id, {"440305"}, case_id);
    v1::Notice n;
    n.ParseFromString(p.bytes);
    n.mutable_subject()->set_id_number(idn);
    p.bytes = n.SerializeAsString();
    p.digest = common::Sha256(p.bytes);
    p.facts = common::FactsOf(n);
    return p;
  };
  auto ids = [](const absl::StatusOr<std::vector<NoticeStore::CaseRecord>>& r) {
    std::vector<std::string> out;
    if (r.ok()) {
      for (const auto& c : *r) out.push_back(c.notice_id);
    }
    return out;
  };
  bool truncated = false;
  case_merge_interval_ = absl::Hours(1);  // no merge before the reopen
  {
    auto store = Open();
    ASSERT_OK(store->Publish({prepared("a", "case-1", "11010519491231002X"),
                              prepared("b", "case-2", "11010519491231002X"),
                              prepared("c", "case-1", "110105194912310029")}));
    EXPECT_EQ(ids(store->FindCase("case-1", false, 10, &truncated)),
              (std::vector<std::string>{"a", "c"}));
    EXPECT_EQ(ids(store->FindCase("11010519491231002X", true, 10, &truncated)),
              (std::vector<std::string>{"a", "b"}));
    EXPECT_TRUE(ids(store->FindCase("case-3", false, 10, &truncated)).empty());
  }
  // Reopened: whatever was not merged is read back from case_index_new.
  case_merge_interval_ = absl::ZeroDuration();
  {
    auto store = Open();
    EXPECT_EQ(ids(store->FindCase("case-1", false, 10, &truncated)),
              (std::vector<std::string>{"a", "c"}));
    // The merge (every round of the background loop, 500 ms, here): then every row is in
    // case_index and none waits.
    ASSERT_TRUE(CountReaches("SELECT count(*) FROM case_index_new", 0));
    EXPECT_EQ(CountRows("SELECT count(*) FROM case_index"), 6);
    EXPECT_EQ(ids(store->FindCase("case-1", false, 10, &truncated)),
              (std::vector<std::string>{"a", "c"}));
    EXPECT_EQ(ids(store->FindCase("110105194912310029", true, 10, &truncated)),
              (std::vector<std::string>{"c"}));
  }
}

// The case index's rows wait for case_merge_interval, or until case_merge_rows wait; a merge moves
// every row that waits.
TEST_P(StoreConformanceTest, TheCaseIndexMergesAfterItsIntervalOrOnceEnoughRowsWait) {
  auto prepared = [](const std::string& id) {
    return WithFacts(Prepared(id, {"440305"}, "case-m"));
  };
  constexpr char kWaiting[] = "SELECT count(*) FROM case_index_new";
  constexpr char kMerged[] = "SELECT count(*) FROM case_index";
  bool truncated = false;
  case_merge_interval_ = absl::Hours(1);
  case_merge_rows_ = 1000;
  {
    auto store = Open();
    ASSERT_OK(store->Publish({prepared("m-1"), prepared("m-2"), prepared("m-3")}));
    // Three rounds of the background loop: fewer rows than case_merge_rows, before the interval.
    absl::SleepFor(absl::Milliseconds(1600));
    EXPECT_EQ(CountRows(kWaiting), 6);  // two rows a notice: its case and its subject
    EXPECT_EQ(CountRows(kMerged), 0);
    auto found = store->FindCase("case-m", false, 10, &truncated);
    ASSERT_OK(found.status());
    EXPECT_EQ(found->size(), 3u);  // read from the rows waiting
  }
  // Four rows are enough, long before the interval: all six are merged.
  case_merge_rows_ = 4;
  {
    auto store = Open();
    ASSERT_TRUE(CountReaches(kWaiting, 0)) << CountRows(kWaiting);
    EXPECT_EQ(CountRows(kMerged), 6);
    ASSERT_OK(store->Publish({prepared("m-4")}));  // two rows: fewer than four, they wait
    absl::SleepFor(absl::Milliseconds(1100));
    EXPECT_EQ(CountRows(kWaiting), 2);
    auto found = store->FindCase("case-m", false, 10, &truncated);
    ASSERT_OK(found.status());
    EXPECT_EQ(found->size(), 4u);  // three from case_index, one waiting
  }
  // With no interval, what waits is merged at the next round.
  case_merge_interval_ = absl::ZeroDuration();
  {
    auto store = Open();
    ASSERT_TRUE(CountReaches(kWaiting, 0)) << CountRows(kWaiting);
    EXPECT_EQ(CountRows(kMerged), 8);
  }
}

// With a party, only the notices that jurisdiction is a party to count: towards the limit and
// towards `truncated` (a case it may not see answers as an unknown one).
TEST_P(StoreConformanceTest, APartyCountsOnlyItsOwnNoticesOfACase) {
  auto store = Open();
  std::vector<PreparedNotice> notices;
  for (int i = 0; i < 3; ++i) {
    notices.push_back(WithFacts(Prepared(absl::StrCat("to-b-", i), {"440305"}, "case-p")));
    notices.push_back(WithFacts(Prepared(absl::StrCat("to-c-", i), {"360111"}, "case-p")));
  }
  ASSERT_OK(store->Publish(notices));
  bool truncated = false;
  auto found = store->FindCase("case-p", false, 2, &truncated, "360111");
  ASSERT_OK(found);
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ((*found)[0].notice_id, "to-c-0");
  EXPECT_EQ((*found)[1].notice_id, "to-c-1");
  EXPECT_TRUE(truncated);
  found = store->FindCase("case-p", false, 3, &truncated, "360111");
  ASSERT_OK(found);
  EXPECT_EQ(found->size(), 3u);
  EXPECT_FALSE(truncated);  // three to B follow, but they are not 360111's
  found = store->FindCase("case-p", false, 0, &truncated, "110101");
  ASSERT_OK(found);
  EXPECT_TRUE(found->empty());
  EXPECT_FALSE(truncated);  // as for a case nobody has
  found = store->FindCase("case-p", false, 5, &truncated);
  ASSERT_OK(found);
  EXPECT_EQ(found->size(), 5u);
  EXPECT_TRUE(truncated);
}

// A department's feed: the granted kinds only, in the order stored, in pages that resume where
// the last one stopped (past the notices of other kinds it looked at).
TEST_P(StoreConformanceTest, TheFeedReadsOneKindInPagesThatResume) {
  auto store = Open();
  std::vector<PreparedNotice> notices;
  for (const std::string id : {"r0", "c0", "r1", "c1", "r2"}) {
    PreparedNotice p = Prepared(id, {"440305"}, "case-f");
    v1::Notice n;
    n.ParseFromString(p.bytes);
    if (id[0] == 'c') {
      n.mutable_certificate()->set_number("JX-" + id);
    } else {
      n.mutable_residence_change()->set_residence_region("440305");
    }
    p.bytes = n.SerializeAsString();
    p.digest = common::Sha256(p.bytes);
    p.facts = common::FactsOf(n);
    notices.push_back(std::move(p));
  }
  ASSERT_OK(store->Publish(notices));
  const std::set<std::string> certificates = {"certificate"};
  v1::FeedPosition next;
  bool more = false;
  auto page = store->ReadFeed(v1::FeedPosition(), certificates, 1, &next, &more);
  ASSERT_OK(page);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].notice_id, "c0");
  EXPECT_EQ((*page)[0].role, v1::QueryNotice::ROLE_PUBLISHED);
  EXPECT_TRUE(more);
  EXPECT_EQ(next.published(), 3u);  // r0, c0 and r1 were looked at; c1 did not fit
  page = store->ReadFeed(v1::FeedPosition(next), certificates, 1, &next, &more);
  ASSERT_OK(page);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].notice_id, "c1");
  EXPECT_FALSE(more);
  EXPECT_EQ(next.published(), 5u);
  EXPECT_EQ(next.received(), 0u);
  page = store->ReadFeed(v1::FeedPosition(next), certificates, 1, &next, &more);
  ASSERT_OK(page);
  EXPECT_TRUE(page->empty());
  EXPECT_EQ(next.published(), 5u);
  // Another grant reads the other kind from the start.
  page = store->ReadFeed(v1::FeedPosition(), {"residence_change"}, 10, &next, &more);
  ASSERT_OK(page);
  EXPECT_EQ(page->size(), 3u);
}

TEST_P(StoreConformanceTest, WaitWakesOnCommit) {
  auto store = Open();
  uint64_t v = store->Version();
  std::thread t([&] { ASSERT_OK(store->Publish({Prepared("a", {"440305"})})); });
  uint64_t after = store->Wait(v, absl::Now() + absl::Seconds(10));
  t.join();
  EXPECT_GT(after, v);
}

// The Merkle nodes below MerkleLog::kFirstStoredLevel are not stored but computed from the leaf
// hashes: every inclusion and consistency proof still verifies, after a reopen too; a subtree
// past the log's end is not found; and rows of those levels left by an older version are never
// read (here they hold garbage).
TEST_P(StoreConformanceTest, LowMerkleLevelsAreComputedAndEveryProofVerifies) {
  constexpr int kNotices = 37;  // odd, so that every level has a partial subtree at the end
  {
    auto store = Open(/*log=*/true);
    for (int i = 0; i < kNotices; ++i) {
      ASSERT_OK(store->Publish({Prepared("m-" + std::to_string(i), {"440305"})}).status());
    }
  }
  int64_t below = -1, above = -1;
  {
    auto db = RawDb();
    Stmt low(db.get(), "SELECT count(*) FROM log_node WHERE level < ?");
    low.Bind(1, int64_t{MerkleLog::kFirstStoredLevel});
    if (low.Step()) below = low.Int(0);
    Stmt high(db.get(), "SELECT count(*) FROM log_node");
    if (high.Step()) above = high.Int(0);
  }
  EXPECT_EQ(below, 0);
  EXPECT_EQ(above, kNotices / 8 + kNotices / 16 + kNotices / 32);  // levels 3, 4 and 5
  auto prove_all = [&](NoticeStore* store) {
    const auto head = store->LogHead();
    ASSERT_EQ(head.first, static_cast<uint64_t>(kNotices));
    auto entries = store->ReadEntries(0, head.first);
    ASSERT_OK(entries.status());
    for (uint64_t size : {uint64_t{1}, uint64_t{5}, uint64_t{8}, uint64_t{13}, head.first}) {
      common::MerkleFrontier tree;
      for (uint64_t i = 0; i < size; ++i) tree.Append(common::LeafHash((*entries)[i]));
      for (uint64_t i = 0; i < size; ++i) {
        auto proof = store->InclusionProof(i, size);
        ASSERT_OK(proof.status()) << i << " in " << size;
        EXPECT_OK(common::VerifyInclusion(i, size, common::LeafHash((*entries)[i]), *proof,
                                          tree.Root()))
            << i << " in " << size;
      }
      auto consistency = store->ConsistencyProof(size, head.first);
      ASSERT_OK(consistency.status()) << size;
      EXPECT_OK(common::VerifyConsistency(size, head.first, *consistency, tree.Root(), head.second))
          << size;
    }
    common::MerkleFrontier frontier;
    EXPECT_OK(store->VerifyStored(frontier, head.first));
    EXPECT_EQ(frontier.Root(), head.second);
  };
  std::string root;
  {
    auto store = Open(/*log=*/true);
    prove_all(store.get());
    root = store->LogHead().second;
  }
  {
    auto db = RawDb();
    EXPECT_THAT(MerkleLog::PerfectSubtreeHash(db.get(), 36, 40).status(),
                StatusIs(absl::StatusCode::kNotFound, ::testing::_));
    EXPECT_THAT(MerkleLog::PerfectSubtreeHash(db.get(), 36, 38).status(),
                StatusIs(absl::StatusCode::kNotFound, ::testing::_));
    EXPECT_OK(MerkleLog::PerfectSubtreeHash(db.get(), 32, 36).status());
  }
  {
    // Rows of the low levels, as an older version wrote them, but wrong: never read.
    auto db = RawDb();
    for (int level = 1; level < MerkleLog::kFirstStoredLevel; ++level) {
      for (int64_t index = 0; index < (kNotices >> level); ++index) {
        Stmt add(db.get(), "INSERT INTO log_node(level, idx, hash) VALUES(?, ?, ?)");
        add.Bind(1, int64_t{level}).Bind(2, index).BindBlob(3, std::string(32, '\0'));
        ASSERT_OK(Done(add, "add an old row"));
      }
    }
  }
  auto reopened = Open(/*log=*/true);
  EXPECT_EQ(reopened->LogHead().second, root);
  prove_all(reopened.get());
}

// The stored log is checked from its bytes up: an edited entry is found, the halt it causes is
// kept across a reopen, and a halted store appends nothing (so nothing is published).
TEST_P(StoreConformanceTest, VerifyStoredFindsAnEditedEntryAndAHaltIsDurable) {
  {
    auto store = Open(/*log=*/true);
    for (int i = 0; i < 5; ++i) {
      ASSERT_OK(store->Publish({Prepared("v-" + std::to_string(i), {"440305"})}).status());
    }
    common::MerkleFrontier frontier;
    ASSERT_OK(store->VerifyStored(frontier, store->LogHead().first));
    EXPECT_EQ(frontier.Root(), store->LogHead().second);
    // The PUBLISHED entry names the channel sequence.
    auto entries = store->ReadEntries(3, 4);
    ASSERT_OK(entries.status());
    v1::LogEntry e;
    ASSERT_TRUE(e.ParseFromString((*entries)[0]));
    ASSERT_EQ(e.sequences_size(), 1);
    EXPECT_EQ(e.sequences(0), 4u);
  }
  {
    auto db = RawDb();
    Stmt edit(db.get(), "UPDATE log_leaf SET bytes = bytes || ? WHERE idx = 2");
    edit.BindBlob(1, std::string(1, '\0'));
    ASSERT_OK(Done(edit, "edit an entry"));
  }
  {
    auto store = Open(/*log=*/true);
    common::MerkleFrontier frontier;
    absl::Status s = store->VerifyStored(frontier, store->LogHead().first);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("entry 2")));
    EXPECT_OK(store->Halted());
    store->Halt(std::string(s.message()));
    EXPECT_THAT(store->Publish({Prepared("after", {"440305"})}).status(),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("exchange halted")));
  }
  auto reopened = Open(/*log=*/true);
  EXPECT_THAT(reopened->Halted(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("entry 2")));
}

// The access log finds a read by every identity number the notices held, with the same key
// after a reopen; the key is stored as text (in the clear here), never as raw bytes.
TEST_P(StoreConformanceTest, AccessRecordsAreFoundByEveryIdentityNumberAndSurviveReopen) {
  v1::Notice n;
  n.mutable_subject()->set_id_number("11010519491231002X");
  n.mutable_birth_service_registration()->set_spouse_id_number("110105194912310029");
  AccessEntry entry{"spiffe://fed.test/client/360102/office", "case", "case review", ""};
  entry.Add(n);
  {
    auto store = Open();
    ASSERT_OK(store->RecordAccess(entry));
    for (const char* id : {"11010519491231002X", "110105194912310029"}) {
      auto found = store->ReadAccess(id, 0, 10);
      ASSERT_OK(found.status());
      ASSERT_EQ(found->size(), 1u) << id;
      EXPECT_EQ((*found)[0].what(), "case");
      EXPECT_EQ((*found)[0].purpose(), "case review");
      EXPECT_EQ((*found)[0].notices(), 1u);
    }
    EXPECT_TRUE(store->ReadAccess("110101199001010011", 0, 10)->empty());
  }
  auto store = Open();
  EXPECT_EQ(store->ReadAccess("11010519491231002X", 0, 10)->size(), 1u);
  auto db = RawDb();
  Stmt key(db.get(), "SELECT length(value) FROM meta WHERE key = 'access_key'");
  ASSERT_TRUE(key.Step());
  EXPECT_EQ(key.Int(0), 64);
}

}  // namespace
}  // namespace caseway::server
