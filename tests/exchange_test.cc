// Exchange between real caseway-node processes over mutual TLS on 127.0.0.1.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/signing.h"
#include "common/tls.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kA[] = "360102";  // Nanchang Donghu (Jiangxi)
constexpr char kB[] = "360111";  // Nanchang Qingshanhu (Jiangxi)
constexpr char kC[] = "440305";  // Shenzhen Nanshan (Guangdong)

// Federation starts nodes A, B and C, each peered with the other two.
class ExchangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    for (const char* j : {kA, kB, kC}) {
      nodes_[j] = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), j);
    }
    for (auto& [j, node] : nodes_) {
      for (auto& [k, peer] : nodes_) {
        if (j != k) node->AddPeer(*peer);
      }
    }
  }
  void StartAll() {
    for (auto& [j, node] : nodes_) ASSERT_OK(node->Start());
  }
  NodeProcess& node(const std::string& j) { return *nodes_.at(j); }

  // DrainInbox reads and acks every notice now in `j`'s inbox.
  std::vector<v1::InboxItem> DrainInbox(const std::string& j) {
    std::vector<v1::InboxItem> items;
    auto client = node(j).NewClient();
    absl::Status s = client->Inbox({.follow = false, .ack = true, .window = 0, .purpose = ""},
                                   [&](const v1::InboxItem& item) {
                                     items.push_back(item);
                                     return true;
                                   });
    EXPECT_OK(s);
    return items;
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(ExchangeTest, PublishedNoticeEntersDestinationInboxExactlyOnce) {
  StartAll();
  auto a = node(kA).NewClient();
  auto result = a->Publish(SampleNotice("n-1", {kB}));
  ASSERT_OK(result);
  ASSERT_EQ(result->deliveries_size(), 1);
  EXPECT_EQ(result->deliveries(0).destination(), kB);
  EXPECT_EQ(result->deliveries(0).seq(), 1u);
  EXPECT_EQ(result->digest().size(), 32u);

  ASSERT_TRUE(WaitFor([&] { return node(kB).InboxTotal() == 1; },
                      absl::Seconds(10)));
  std::vector<v1::InboxItem> items = DrainInbox(kB);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].origin(), kA);
  EXPECT_EQ(items[0].channel_seq(), 1u);
  EXPECT_EQ(items[0].notice().notice_id(), "n-1");
  EXPECT_EQ(items[0].notice().origin(), kA) << "origin is set by the publishing node";
  EXPECT_EQ(items[0].notice().subject().name(), "测试人");
  // Acked: a second read finds nothing, and C received nothing.
  EXPECT_TRUE(DrainInbox(kB).empty());
  EXPECT_EQ(node(kC).InboxTotal(), 0);
}

TEST_F(ExchangeTest, EachDestinationGetsItsOwnContiguousChannel) {
  StartAll();
  auto a = node(kA).NewClient();
  for (int i = 1; i <= 5; ++i) {
    std::vector<std::string> dests = i % 2 ? std::vector<std::string>{kB, kC}
                                           : std::vector<std::string>{kC};
    auto r = a->Publish(SampleNotice("multi-" + std::to_string(i), dests));
    ASSERT_OK(r);
  }
  // C gets 5 entries (seq 1..5), B gets 3 (seq 1..3).
  ASSERT_TRUE(WaitFor([&] { return node(kC).InboxTotal() == 5 &&
                                   node(kB).InboxTotal() == 3; },
                      absl::Seconds(10)));
  for (auto [j, last] : {std::pair<const char*, uint64_t>{kC, 5}, {kB, 3}}) {
    uint64_t highest = 0;
    for (const auto& item : node(j).InboxItems()) {
      EXPECT_EQ(item.origin(), kA);
      highest = std::max(highest, item.channel_seq());
    }
    EXPECT_EQ(highest, last) << j;
  }
  EXPECT_EQ(node(kA).Head("440305"), 5);
  EXPECT_EQ(node(kA).Published(), 5);
  // Acks come back to the origin.
  ASSERT_TRUE(WaitFor(
      [&] { return node(kA).Acked("440305") == 5; },
      absl::Seconds(10)));
}

TEST_F(ExchangeTest, RepublishingIdenticalContentReturnsTheOriginalResult) {
  StartAll();
  auto a = node(kA).NewClient();
  auto first = a->Publish(SampleNotice("idem-1", {kB, kC}));
  ASSERT_OK(first);
  ASSERT_OK(a->Publish(SampleNotice("idem-2", {kB})));
  auto again = a->Publish(SampleNotice("idem-1", {kB, kC}));
  ASSERT_OK(again);
  EXPECT_TRUE(again->duplicate());
  EXPECT_FALSE(first->duplicate());
  EXPECT_EQ(again->digest(), first->digest());
  ASSERT_EQ(again->deliveries_size(), 2);
  EXPECT_EQ(again->deliveries(0).seq(), first->deliveries(0).seq());
  EXPECT_EQ(again->deliveries(1).seq(), first->deliveries(1).seq());

  v1::Notice changed = SampleNotice("idem-1", {kB, kC});
  changed.set_case_id("another-case");
  EXPECT_THAT(a->Publish(changed),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("notice.notice_id")));
  EXPECT_EQ(node(kA).Published(), 2);
  EXPECT_EQ(node(kA).Head("360111"), 2);
}

TEST_F(ExchangeTest, SubscriberOfflineCatchesUpFromItsCursor) {
  StartAll();
  auto a = node(kA).NewClient();
  ASSERT_OK(a->Publish(SampleNotice("before", {kB})));
  ASSERT_TRUE(WaitFor([&] { return node(kB).InboxTotal() == 1; },
                      absl::Seconds(10)));
  EXPECT_EQ(node(kB).Stop(), 0) << "SIGTERM is a clean shutdown";
  std::vector<v1::Notice> batch;
  for (int i = 0; i < 1500; ++i) batch.push_back(SampleNotice("offline-" + std::to_string(i), {kB}));
  for (size_t i = 0; i < batch.size(); i += 500) {
    ASSERT_OK(a->PublishBatch({batch.begin() + i, batch.begin() + i + 500}));
  }
  ASSERT_OK(node(kB).Start());
  ASSERT_TRUE(WaitFor([&] { return node(kB).InboxTotal() == 1501; },
                      absl::Seconds(30)));
  EXPECT_EQ(DistinctNotices(node(kB).InboxItems()), 1501);
  // (The subscriber's cursor follows the commit that the inbox count already sees.)
  EXPECT_TRUE(WaitFor([&] { return node(kB).Cursor("360102") == 1501; }, absl::Seconds(5)));
}

TEST_F(ExchangeTest, OriginRestartIsFollowedByReconnect) {
  StartAll();
  auto a = node(kA).NewClient();
  ASSERT_OK(a->Publish(SampleNotice("r-1", {kC})));
  ASSERT_TRUE(WaitFor([&] { return node(kC).InboxTotal() == 1; },
                      absl::Seconds(10)));
  node(kA).Kill();
  ASSERT_OK(node(kA).Start());
  a = node(kA).NewClient();
  ASSERT_OK(a->Publish(SampleNotice("r-2", {kC})));
  ASSERT_TRUE(WaitFor([&] { return node(kC).InboxTotal() == 2; },
                      absl::Seconds(15)));
}

TEST_F(ExchangeTest, StatusReportsHeadsCursorsAndLag) {
  StartAll();
  auto a = node(kA).NewClient();
  for (int i = 0; i < 3; ++i) ASSERT_OK(a->Publish(SampleNotice("s-" + std::to_string(i), {kB})));
  auto b = node(kB).NewClient();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = b->Status();
        if (!st.ok()) return false;
        for (const auto& s : st->subscriptions()) {
          if (s.origin() == kA) return s.cursor() == 3 && s.peer_head() == 3 && s.lag() == 0;
        }
        return false;
      },
      absl::Seconds(10)));
  auto sa = a->Status();
  ASSERT_OK(sa);
  EXPECT_EQ(sa->jurisdiction(), kA);
  bool found = false;
  for (const auto& c : sa->channels()) {
    if (c.destination() == kB) {
      found = true;
      EXPECT_EQ(c.head(), 3u);
    }
  }
  EXPECT_TRUE(found);
  // With B down, A's status still lists the channel; B's subscription to a stopped C shows backoff.
  node(kC).Kill();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = b->Status();
        if (!st.ok()) return false;
        for (const auto& s : st->subscriptions()) {
          if (s.origin() == kC) return s.state().rfind("backoff", 0) == 0;
        }
        return false;
      },
      absl::Seconds(10)));
}

// SIGTERM ends a node cleanly and promptly while it serves subscriptions and runs its own: the
// stream machines, their dispatcher and the store go down in order (a use after free here once
// made a node hang on its way out).
TEST_F(ExchangeTest, StopsCleanlyWhileServingSubscriptions) {
  StartAll();
  for (int round = 0; round < 3; ++round) {
    auto a = node(kA).NewClient();
    for (int i = 0; i < 20; ++i) {
      ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("t-", round, "-", i), {kB, kC})));
    }
    for (const char* j : {kB, kC, kA}) {
      const absl::Time start = absl::Now();
      EXPECT_EQ(node(j).Stop(), 0) << j << " round " << round << "\n" << node(j).log();
      EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << j;
      ASSERT_OK(node(j).Start());
    }
  }
  ASSERT_TRUE(WaitFor([&] { return node(kC).InboxTotal() == 60; },
                      absl::Seconds(15)));
}

// A publisher does not fail while its node restarts: UNAVAILABLE is retried (publishing is
// idempotent on notice_id), and the notice is stored once.
TEST_F(ExchangeTest, PublishIsRetriedWhileTheNodeRestarts) {
  StartAll();
  auto a = node(kA).NewClient();
  ASSERT_OK(a->Publish(SampleNotice("r-0", {kB})));
  node(kA).Kill();
  std::thread restart([&] {
    absl::SleepFor(absl::Milliseconds(400));
    EXPECT_OK(node(kA).Start());
  });
  auto result = a->Publish(SampleNotice("r-1", {kB}));
  restart.join();
  ASSERT_OK(result);
  EXPECT_EQ(result->deliveries(0).seq(), 2u);
  EXPECT_EQ(node(kA).Published(), 2);
}

// A hub serves serve_only peers (they subscribe to it) without subscribing to them: each gets
// its own channel, the hub opens no subscription, and its status shows one stream per channel.
TEST_F(ExchangeTest, HubServesServeOnlyPeersWithoutSubscribingToThem) {
  node(kA).ClearPeers();
  node(kA).AddPeer(node(kB), /*serve_only=*/true);
  node(kA).AddPeer(node(kC), /*serve_only=*/true);
  StartAll();
  auto a = node(kA).NewClient();
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("h-", i), {kB, kC})));
  }
  ASSERT_OK(a->Publish(SampleNotice("h-c-only", {kC})));
  ASSERT_TRUE(WaitFor([&] { return node(kB).InboxTotal() == 5; },
                      absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return node(kC).InboxTotal() == 6; },
                      absl::Seconds(10)));
  auto st = a->Status();
  ASSERT_OK(st);
  EXPECT_EQ(st->subscriptions_size(), 0) << "a hub does not subscribe to serve-only peers";
  ASSERT_TRUE(WaitFor(
      [&] {
        auto now = a->Status();
        if (!now.ok() || now->channels_size() != 2) return false;
        for (const auto& c : now->channels()) {
          if (c.open_streams() != 1 || c.acked() != c.head()) return false;
        }
        return true;
      },
      absl::Seconds(10)));
  // B and C, which do subscribe to A, see no subscription from A in their channel lists.
  auto sb = node(kB).NewClient()->Status();
  ASSERT_OK(sb);
  for (const auto& c : sb->channels()) {
    if (c.destination() == kA) {
      EXPECT_EQ(c.open_streams(), 0u);
    }
  }
  EXPECT_TRUE(WaitFor([&] { return node(kB).WitnessedSize(kA) > 0; }, absl::Seconds(10)))
      << "B still witnesses A";
  for (const auto& e : node(kA).LogEntries()) {
    EXPECT_NE(e.kind(), v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED)
        << "A witnesses no serve-only peer, yet cosigned " << e.peer();
  }
}

// A consumer may read until caught_up before acking: with exactly `window` items waiting, the
// window is full when the last is sent, and caught_up must still come.
TEST_F(ExchangeTest, InboxSignalsCaughtUpWhenTheWindowIsFullAndNothingIsLeft) {
  StartAll();
  auto a = node(kA).NewClient();
  ASSERT_OK(a->PublishBatch({SampleNotice("cu-1", {kB}), SampleNotice("cu-2", {kB})}));
  ASSERT_TRUE(WaitFor([&] { return node(kB).InboxTotal() == 2; },
                      absl::Seconds(10)));
  auto b = node(kB).NewClient();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = b->stub()->Inbox(&ctx);
  v1::InboxRequest start;
  start.mutable_start()->set_purpose(kTestPurpose);
  start.mutable_start()->set_ack(true);
  start.mutable_start()->set_window(2);
  ASSERT_TRUE(stream->Write(start));
  std::vector<uint64_t> seqs;
  v1::InboxResponse resp;
  while (stream->Read(&resp) && !resp.has_caught_up()) seqs.push_back(resp.item().inbox_seq());
  ASSERT_TRUE(resp.has_caught_up()) << "no caught_up after " << seqs.size() << " items";
  EXPECT_EQ(seqs.size(), 2u);
  v1::InboxRequest ack;
  for (uint64_t s : seqs) ack.mutable_ack()->add_inbox_seqs(s);
  ASSERT_TRUE(stream->Write(ack));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(node(kB).InboxUnacked(), 0);
}

// The test process acts as node B on a raw PeerExchange stream to check flow control.
TEST_F(ExchangeTest, OriginStopsAtTheWindowUntilAcked) {
  node(kA).set_extra_yaml("limits:\n  max_batch_notices: 1000\n");
  // Only A runs; the test holds B's certificate and subscribes by hand.
  ASSERT_OK(node(kA).Start());
  auto a = node(kA).NewClient();
  for (int i = 0; i < 4; ++i) ASSERT_OK(a->Publish(SampleNotice("w-" + std::to_string(i), {kB})));

  std::string b_cert = pki_->Node(kB);
  auto creds = common::ChannelCredentials({pki_->ca(), b_cert + ".crt", b_cert + ".key"});
  ASSERT_OK(creds);
  auto stub = v1::PeerExchange::NewStub(grpc::CreateChannel(node(kA).address(), *creds));
  grpc::ClientContext ctx;
  auto stream = stub->Subscribe(&ctx);
  v1::SubscribeRequest open;
  open.mutable_open()->set_destination(kB);
  open.mutable_open()->set_cursor(0);
  open.mutable_open()->set_window(1);
  ASSERT_TRUE(stream->Write(open));

  // The first batch holds the 4 entries already there; publish a 5th afterwards and check that
  // only heartbeats announcing head 5 arrive until the first batch is acked.
  v1::SubscribeResponse resp;
  v1::Signed manifest;
  uint64_t last = 0;
  int batches = 0, heartbeats_after_batch = 0;
  while (heartbeats_after_batch < 3 && stream->Read(&resp)) {
    if (resp.has_batch()) {
      ++batches;
      last = resp.batch().entries(resp.batch().entries_size() - 1).seq();
      manifest = resp.batch().manifest();
      ASSERT_OK(a->Publish(SampleNotice("w-late", {kB})));  // more is available now
    } else if (batches > 0 && resp.heartbeat().head() == 5) {
      ++heartbeats_after_batch;  // the origin knows of entry 5 and still does not send it
    }
  }
  EXPECT_EQ(batches, 1) << "a second batch was sent before the first was acked";
  EXPECT_EQ(last, 4u);
  // With the exchange log on, an ack carries B's signed receipt for the manifest received.
  auto b_key = common::SigningKey::LoadPem(*common::ReadFile(b_cert + ".sign.key"));
  ASSERT_OK(b_key);
  v1::Receipt receipt;
  receipt.set_receiver(kB);
  receipt.set_origin(kA);
  receipt.set_manifest_digest(common::Sha256(manifest.message()));
  receipt.set_first_seq(1);
  receipt.set_last_seq(last);
  v1::SubscribeRequest ack;
  ack.mutable_ack()->set_seq(last);
  ack.mutable_ack()->mutable_receipt()->set_message(receipt.SerializeAsString());
  ack.mutable_ack()->mutable_receipt()->set_signature(
      (*b_key)->Sign(common::kReceiptContext, receipt.SerializeAsString()));
  ASSERT_TRUE(stream->Write(ack));
  do {
    ASSERT_TRUE(stream->Read(&resp));
  } while (!resp.has_batch());
  EXPECT_EQ(resp.batch().first_seq(), 5u);
  ctx.TryCancel();
  stream->Finish();
}

}  // namespace
}  // namespace caseway::testing
