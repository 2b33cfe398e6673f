// Chaos: three nodes exchanging both ways through loopback proxies, publishers that resend until
// acknowledged, a consumer acking every inbox, and a run of random faults: kill -9 of any node
// (restarted after a moment), connections cut, a node unreachable for a while, a stalled link.
// Afterwards every acknowledged notice is in each of its destinations' inboxes exactly once and
// every pair of nodes reconciles as proven.
//
// The suite runs a short chaos (CASEWAY_CHAOS_TRIALS, default 12 faults); docs/testing.md shows
// a long run. CASEWAY_CHAOS_SEED replays a run (the seed is printed).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "tests/testing/harness.h"
#include "tests/testing/proxy.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

const char* const kNodes[] = {"360102", "440305", "110101"};
// Each publisher goes on while the faults last (at most this many batches).
constexpr int kMaxBatchesPerNode = 2000;
constexpr int kBatch = 10;

int EnvInt(const char* name, int fallback) {
  const char* v = getenv(name);
  return v == nullptr ? fallback : atoi(v);
}

class ChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    for (const char* j : kNodes) {
      nodes_[j] = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), j);
      nodes_[j]->set_exchange_yaml("  batch_max_entries: 16\n  window_batches: 2\n");
    }
    for (const char* j : kNodes) proxies_[j] = std::make_unique<LoopbackProxy>(nodes_[j]->port());
    // Every node dials the others through their proxies.
    for (const char* j : kNodes) {
      for (const char* k : kNodes) {
        if (std::string(j) != k) nodes_[j]->AddPeerAt(k, proxies_[k]->address());
      }
    }
    for (const char* j : kNodes) ASSERT_OK(nodes_[j]->Start());
    auditor_ = pki_->Auditor("coordinator");
  }

  std::vector<std::string> Others(const std::string& j) {
    std::vector<std::string> out;
    for (const char* k : kNodes) {
      if (j != k) out.push_back(k);
    }
    return out;
  }

  std::unique_ptr<client::Client> ClientOf(const std::string& j) {
    absl::MutexLock lock(&mu_);
    return nodes_[j]->NewClient();
  }

  // Publish sends this node's batches, each resent with the same ids until acknowledged, until
  // the faults are over.
  void Publish(const std::string& j) {
    for (int b = 0; b < kMaxBatchesPerNode && !faults_over_;) {
      std::vector<v1::Notice> batch;
      for (int i = 0; i < kBatch; ++i) {
        batch.push_back(SampleNotice(absl::StrCat("chaos-", j, "-", b, "-", i), Others(j)));
      }
      auto result = ClientOf(j)->PublishBatch(batch);
      if (!result.ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      acked_.at(j) += kBatch;
      ++b;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  // Consume acknowledges every node's inbox, again and again, until told to stop.
  void Consume() {
    while (!stop_consumer_) {
      for (const char* j : kNodes) Drain(j);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  // Drain takes and acknowledges what j's inbox holds now, recording each item in seen_.
  void Drain(const std::string& j) {
    (void)ClientOf(j)->Inbox({.follow = false, .ack = true, .window = 64, .purpose = ""},
                             [&](const v1::InboxItem& item) {
                               absl::MutexLock lock(&seen_mu_);
                               seen_[j][{item.origin(), item.notice().notice_id()}].insert(
                                   item.inbox_seq());
                               return true;
                             });
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::string, std::unique_ptr<LoopbackProxy>> proxies_;
  std::string auditor_;
  absl::Mutex mu_;  // guards restarts against NewClient
  std::map<std::string, std::atomic<int>> acked_;
  std::atomic<bool> faults_over_{false};
  std::atomic<bool> stop_consumer_{false};
  // What the consumer was handed, by node: each (origin, notice_id) with the inbox positions it
  // came from. A notice handed again after a crash comes from the same position; one stored
  // twice would come from two.
  absl::Mutex seen_mu_;
  std::map<std::string, std::map<std::pair<std::string, std::string>, std::set<uint64_t>>> seen_;
};

TEST_F(ChaosTest, EveryAcknowledgedNoticeArrivesExactlyOnceAndEveryPairReconciles) {
  const int trials = EnvInt("CASEWAY_CHAOS_TRIALS", 12);
  const unsigned seed = static_cast<unsigned>(EnvInt("CASEWAY_CHAOS_SEED", static_cast<int>(time(nullptr))));
  std::mt19937 rng(seed);
  RecordProperty("seed", static_cast<int>(seed));
  std::cerr << "chaos seed " << seed << ", " << trials << " faults\n";
  for (const char* j : kNodes) acked_[j] = 0;

  std::vector<std::thread> publishers;
  for (const char* j : kNodes) publishers.emplace_back([this, j] { Publish(j); });
  std::thread consumer([this] { Consume(); });

  std::map<std::string, int> kills;
  for (int t = 0; t < trials; ++t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 700));
    const std::string j = kNodes[rng() % 3];
    switch (rng() % 4) {
      case 0: {  // kill -9, restart after a moment
        {
          absl::MutexLock lock(&mu_);
          nodes_[j]->Kill();
        }
        ++kills[j];
        std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 500));
        absl::MutexLock lock(&mu_);
        absl::Status started = nodes_[j]->Start();
        EXPECT_OK(started) << "trial " << t << " seed " << seed;
        if (!started.ok()) t = trials;  // end the faults; the threads are joined below
        break;
      }
      case 1:  // every connection to j cut
        proxies_[j]->Cut();
        break;
      case 2:  // j unreachable for a while
        proxies_[j]->SetDown(true);
        std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 1200));
        proxies_[j]->SetDown(false);
        break;
      case 3:  // links to j stall
        proxies_[j]->Stall(absl::Milliseconds(300 + rng() % 1500));
        break;
    }
  }
  faults_over_ = true;
  for (auto& p : publishers) p.join();
  stop_consumer_ = true;
  consumer.join();

  // Healed: every acknowledged notice reaches each of its two destinations exactly once.
  int total = 0;
  for (const char* j : kNodes) {
    EXPECT_GT(acked_[j].load(), 0) << j;
    total += acked_[j];
    RecordProperty(absl::StrCat("acked_", j), acked_[j].load());
  }
  std::cerr << "acknowledged " << total << " notices; kills:";
  for (auto& [j, n] : kills) std::cerr << " " << j << "=" << n;
  std::cerr << "\n";
  for (const char* d : kNodes) {
    const int64_t expected = total - acked_[d];  // from the two others
    NodeProcess& node = *nodes_[d];
    bool complete = WaitFor([&] { return node.InboxTotal() >= expected; },
                            absl::Seconds(120));
    EXPECT_TRUE(complete) << d << " inbox " << node.InboxTotal() << " of "
                          << expected << " (seed " << seed << ")";
    EXPECT_EQ(node.InboxTotal(), expected) << d;
    Drain(d);  // what the consumer had not taken yet
    absl::MutexLock lock(&seen_mu_);
    const auto& seen = seen_[d];
    EXPECT_EQ(static_cast<int64_t>(seen.size()), expected) << d;
    std::map<std::string, int> from;
    for (const auto& [notice, positions] : seen) {
      ++from[notice.first];
      EXPECT_EQ(positions.size(), 1u) << notice.first << "/" << notice.second << " stored at "
                                      << positions.size() << " inbox positions of " << d;
    }
    for (const std::string& o : Others(d)) {
      EXPECT_EQ(from[o], acked_[o].load()) << o << " -> " << d;
    }
  }
  // Every exchange is proven by both logs (after the last checkpoints are signed and cosigned).
  std::this_thread::sleep_for(std::chrono::seconds(3));
  for (int a = 0; a < 3; ++a) {
    for (int b = a + 1; b < 3; ++b) {
      RunResult r = RunCommand(AuditCommand(*pki_, auditor_, dir_.path(),
                                            {"reconcile", nodes_[kNodes[a]]->address(),
                                             nodes_[kNodes[b]]->address()}));
      EXPECT_EQ(r.exit_code, 0) << kNodes[a] << " x " << kNodes[b] << " (seed " << seed << ")\n"
                                << r.out << r.err;
      EXPECT_THAT(r.out, HasSubstr("OK: every exchange matched"));
    }
  }
  for (auto& [j, n] : kills) RecordProperty(absl::StrCat("kills_", j), n);
}

}  // namespace
}  // namespace caseway::testing
