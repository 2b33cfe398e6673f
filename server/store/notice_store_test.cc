#include "server/store/notice_store.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/digest.h"
#include "tests/testing/status_matchers.h"

namespace caseway::server {
namespace {

using ::caseway::testing::StatusIs;
using ::testing::HasSubstr;

class NoticeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/caseway-store-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/node.db";
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  std::unique_ptr<NoticeStore> Open() {
    auto s = NoticeStore::Open(path_, 64);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
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

  static v1::Batch MakeBatch(uint64_t first, int count) {
    v1::Batch b;
    b.set_first_seq(first);
    for (int i = 0; i < count; ++i) {
      v1::Notice n;
      n.set_notice_id("r-" + std::to_string(first + i));
      auto* e = b.add_entries();
      e->set_seq(first + i);
      e->set_notice(n.SerializeAsString());
    }
    return b;
  }

  std::string dir_, path_;
};

TEST_F(NoticeStoreTest, PublishAssignsContiguousSequencesPerChannel) {
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

TEST_F(NoticeStoreTest, ConcurrentPublishersNeverShareOrSkipASequence) {
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

TEST_F(NoticeStoreTest, IdenticalRepublishIsADuplicateAndDifferentContentIsRefusedWhole) {
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

TEST_F(NoticeStoreTest, ReopenKeepsEverythingCommitted) {
  {
    auto store = Open();
    ASSERT_OK(store->Publish({Prepared("a", {"440305"}), Prepared("b", {"440305"})}));
    ASSERT_OK(store->StoreReceived("440305", MakeBatch(1, 3)));
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

TEST_F(NoticeStoreTest, ReceivedBatchMustStartAtCursorPlusOne) {
  auto store = Open();
  EXPECT_THAT(store->StoreReceived("440305", MakeBatch(2, 2)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is not cursor+1")));
  ASSERT_OK(store->StoreReceived("440305", MakeBatch(1, 2)));
  // Redelivery of what is stored is refused, so nothing enters the inbox twice.
  EXPECT_THAT(store->StoreReceived("440305", MakeBatch(2, 2)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cursor 2")));
  v1::Batch broken = MakeBatch(3, 3);
  broken.mutable_entries(1)->set_seq(9);
  EXPECT_THAT(store->StoreReceived("440305", broken),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("breaks contiguity")));
  v1::Batch garbage = MakeBatch(3, 1);
  garbage.mutable_entries(0)->set_notice("\xff\xff\xff");
  EXPECT_THAT(store->StoreReceived("440305", garbage),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a parsable")));
  auto counts = store->InboxCounts();
  ASSERT_OK(counts);
  EXPECT_EQ(counts->first, 2u);
}

TEST_F(NoticeStoreTest, InboxAcksAreDurableAndUnknownSeqsAreNamed) {
  auto store = Open();
  ASSERT_OK(store->StoreReceived("440305", MakeBatch(1, 3)));
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

TEST_F(NoticeStoreTest, ReadChannelStopsNearTheByteBudgetButReturnsAtLeastOne) {
  auto store = Open();
  std::vector<PreparedNotice> many;
  for (int i = 0; i < 10; ++i) many.push_back(Prepared("n" + std::to_string(i), {"440305"}, std::string(1000, 'x')));
  ASSERT_OK(store->Publish(many));
  auto few = store->ReadChannel("440305", 1, 100, 3000);
  ASSERT_OK(few);
  EXPECT_EQ(few->size(), 3u);
  auto one = store->ReadChannel("440305", 1, 100, 1);
  ASSERT_OK(one);
  EXPECT_EQ(one->size(), 1u);
}

TEST_F(NoticeStoreTest, WaitWakesOnCommit) {
  auto store = Open();
  uint64_t v = store->Version();
  std::thread t([&] { ASSERT_OK(store->Publish({Prepared("a", {"440305"})})); });
  uint64_t after = store->Wait(v, absl::Now() + absl::Seconds(10));
  t.join();
  EXPECT_GT(after, v);
}

}  // namespace
}  // namespace caseway::server
