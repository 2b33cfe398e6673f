// Active/standby on PostgreSQL (docs/operator.md, "Active/standby on PostgreSQL"): jurisdiction
// 440305 runs as two caseway-node processes on one PostgreSQL database (started by the test), its
// peer 360102 on SQLite dials both addresses. Real processes, real mutual TLS, kill -9.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <numeric>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "caseway/client/client.h"
#include "tests/testing/harness.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/proxy.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kA[] = "440305";  // the pair
constexpr char kB[] = "360102";
constexpr int kNotices = 150;    // published by each side, one call each

class FailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dsn = NewPostgresDatabase("failover");
    ASSERT_OK(dsn);
    dsn_ = *dsn;
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    for (const char* sub : {"/a1", "/a2", "/b"}) {
      std::filesystem::create_directories(dir_.path() + sub);
    }
    a1_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path() + "/a1", kA);
    a2_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path() + "/a2", kA);
    b_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path() + "/b", kB);
    a1_->AddPeer(*b_);
    a2_->AddPeer(*b_);
    b_->AddPeerAt(kA, PairAddress());
    auditor_ = pki_->Auditor("coordinator");
  }

  // StartPair starts a1 (the active node), a2 (the standby: it listens only once it holds the
  // lease) and their peer b, a1 and a2 on the test's database.
  void StartPair() {
    a1_->set_postgres(dsn_);
    a2_->set_postgres(dsn_);
    ASSERT_OK(a1_->Start());
    a2_->Launch();
    ASSERT_OK(b_->Start());
  }

  std::string PairAddress() const { return a1_->address() + "," + a2_->address(); }

  // A client of 440305's office that knows both of its nodes.
  std::unique_ptr<client::Client> PairClient() {
    const std::string prefix = pki_->Client(kA, "office");
    client::ConnectionOptions o;
    o.address = PairAddress();
    o.ca_file = pki_->ca();
    o.cert_file = prefix + ".crt";
    o.key_file = prefix + ".key";
    o.purpose = kTestPurpose;
    auto c = client::Client::Connect(o);
    EXPECT_OK(c.status());
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Publish sends `count` notices one call each from `client`, each retried with the same id
  // until acknowledged (bounded: 60 s in all); the acknowledged ids go to `acked`.
  static void Publish(client::Client* client, const std::string& prefix,
                      const std::string& destination, int count, std::set<std::string>* acked,
                      std::atomic<int>* progress) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    for (int i = 0; i < count && absl::Now() < deadline;) {
      const std::string id = absl::StrCat(prefix, i);
      auto r = client->Publish(SampleNotice(id, {destination}));
      if (r.ok()) {
        acked->insert(id);
        ++i;
        ++*progress;
      } else {
        absl::SleepFor(absl::Milliseconds(50));
      }
    }
  }

  // InboxIds reads every notice in `node`'s inbox through Gateway.Inbox (without acking).
  static std::multiset<std::string> InboxIds(client::Client* client) {
    std::multiset<std::string> ids;
    client::InboxOptions options;
    options.follow = false;
    options.ack = false;
    EXPECT_OK(client->Inbox(options, [&](const v1::InboxItem& item) {
      ids.insert(item.notice().notice_id());
      return true;
    }));
    return ids;
  }

  RunResult Audit(std::vector<std::string> args) {
    return RunCommand(AuditCommand(*pki_, auditor_, dir_.path(), std::move(args)));
  }

  TempDir dir_;
  std::string dsn_;
  std::unique_ptr<Pki> pki_;
  std::unique_ptr<NodeProcess> a1_, a2_, b_;
  std::string auditor_;
};

TEST_F(FailoverTest, TheStandbyTakesOverAKilledActiveNodeAndNothingIsLostOrDoubled) {
  ASSERT_NO_FATAL_FAILURE(StartPair());
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_FALSE(a2_->Exited());
  EXPECT_THAT(a2_->log(), HasSubstr("standby: another node of this jurisdiction holds"));

  // Both directions at once: 440305's office through both addresses, 360102's to 440305.
  auto pair_client = PairClient();
  auto b_client = b_->NewClient();
  ASSERT_NE(pair_client, nullptr);
  std::set<std::string> from_a, from_b;
  std::atomic<int> progress_a{0}, progress_b{0};
  std::thread pa([&] { Publish(pair_client.get(), "fa-", kB, kNotices, &from_a, &progress_a); });
  std::thread pb([&] { Publish(b_client.get(), "fb-", kA, kNotices, &from_b, &progress_b); });

  ASSERT_TRUE(WaitFor([&] { return progress_a >= 40 && progress_b >= 40; }, absl::Seconds(30)));
  a1_->Kill();  // kill -9 the active node mid-stream
  const absl::Time killed = absl::Now();
  absl::Status took_over = a2_->WaitListening(absl::Seconds(15));
  const absl::Duration takeover = absl::Now() - killed;
  pa.join();
  pb.join();
  ASSERT_OK(took_over) << a2_->log();
  EXPECT_LT(takeover, absl::Seconds(10)) << "the standby took over after " << takeover;
  RecordProperty("takeover_ms", static_cast<int>(absl::ToInt64Milliseconds(takeover)));
  EXPECT_THAT(a2_->log(), HasSubstr("active: this node holds the writer lease"));
  ASSERT_EQ(from_a.size(), static_cast<size_t>(kNotices));
  ASSERT_EQ(from_b.size(), static_cast<size_t>(kNotices));

  // Every acknowledged notice arrives exactly once, in both directions.
  auto a_client = a2_->NewClient();
  std::multiset<std::string> at_b, at_a;
  ASSERT_TRUE(WaitFor([&] {
    at_b = InboxIds(b_client.get());
    at_a = InboxIds(a_client.get());
    return at_b.size() >= from_a.size() && at_a.size() >= from_b.size();
  }, absl::Seconds(60))) << at_b.size() << " at 360102, " << at_a.size() << " at 440305";
  EXPECT_EQ(at_b, std::multiset<std::string>(from_a.begin(), from_a.end()));
  EXPECT_EQ(at_a, std::multiset<std::string>(from_b.begin(), from_b.end()));
  // One channel sequence per notice, without gaps, across the two writers.
  std::vector<uint64_t> sequences;
  for (const auto& e : a2_->LogEntries()) {
    if (e.kind() != v1::LogEntry::KIND_PUBLISHED) continue;
    for (int i = 0; i < e.destinations_size() && i < e.sequences_size(); ++i) {
      if (e.destinations(i) == kB) sequences.push_back(e.sequences(i));
    }
  }
  std::sort(sequences.begin(), sequences.end());
  std::vector<uint64_t> one_to_n(kNotices);
  std::iota(one_to_n.begin(), one_to_n.end(), 1);
  EXPECT_EQ(sequences, one_to_n);
  EXPECT_EQ(a2_->Head(kB), kNotices);

  // The log proves the exchange across the failover: one log, continued by the second writer.
  ASSERT_TRUE(WaitFor([&] {
    return a2_->Acked("360102") == kNotices &&
           b_->Acked("440305") == kNotices;
  }, absl::Seconds(30)));
  absl::SleepFor(absl::Seconds(2));  // the last checkpoints signed and cosigned
  RunResult verify = Audit({"verify", a2_->address()});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  RunResult r = Audit({"reconcile", a2_->address(), b_->address()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("OK: every exchange matched"));
}

// PostgreSQL ends the active node's sessions (a restart of the database, pg_terminate_backend):
// its next write fails unacknowledged and it stops (status 75, a restart connects again); the
// client's retried publish is stored once, by the standby.
TEST_F(FailoverTest, AnActiveNodeWhoseDatabaseSessionsEndStopsAndTheStandbyTakesOver) {
  ASSERT_NO_FATAL_FAILURE(StartPair());
  auto pair_client = PairClient();
  ASSERT_OK(pair_client->Publish(SampleNotice("before", {kB})).status());

  ASSERT_OK(PgQuery(dsn_, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                .status());
  auto r = pair_client->Publish(SampleNotice("after", {kB}));
  ASSERT_OK(r.status());
  EXPECT_EQ(r->deliveries(0).seq(), 2u);
  ASSERT_TRUE(WaitFor([&] { return a1_->Exited(); }, absl::Seconds(10))) << a1_->log();
  EXPECT_EQ(a1_->exit_status(), 75) << a1_->log();
  EXPECT_THAT(a1_->log(), HasSubstr("the connection to PostgreSQL was lost"));
  ASSERT_OK(a2_->WaitListening(absl::Seconds(1))) << a2_->log();
  EXPECT_EQ(a2_->Published(), 2);
}

// A consumer follows the pair's inbox through a client that knows both addresses, without acking
// (so the other node sends everything again): when the active node is killed, the client opens
// the stream again on the standby once it has taken over, and hands every notice over once.
TEST_F(FailoverTest, AnInboxConsumerFollowsTheFailoverAndSeesEveryNoticeOnce) {
  constexpr int kEach = 15;
  ASSERT_NO_FATAL_FAILURE(StartPair());
  absl::Mutex mu;
  std::multiset<std::string> seen;
  absl::Status ended;
  std::atomic<bool> done{false};
  auto consumer_client = PairClient();
  std::thread consumer([&] {
    client::InboxOptions o;
    o.follow = true;
    o.ack = false;
    ended = consumer_client->Inbox(o, [&](const v1::InboxItem& item) {
      absl::MutexLock lock(&mu);
      seen.insert(item.notice().notice_id());
      return seen.size() < 2 * kEach;
    });
    done = true;
  });
  auto seen_count = [&] {
    absl::MutexLock lock(&mu);
    return seen.size();
  };
  auto b_client = b_->NewClient();
  std::set<std::string> acked;
  std::atomic<int> progress{0};
  Publish(b_client.get(), "first-", kA, kEach, &acked, &progress);
  EXPECT_TRUE(WaitFor([&] { return seen_count() >= kEach; }, absl::Seconds(30))) << seen_count();

  a1_->Kill();
  ASSERT_OK(a2_->WaitListening(absl::Seconds(15))) << a2_->log();
  Publish(b_client.get(), "second-", kA, kEach, &acked, &progress);
  const bool finished = WaitFor([&] { return done.load(); }, absl::Seconds(45));
  if (!finished) a2_->Stop();  // ends the stream: the consumer gives up within its budget
  consumer.join();
  ASSERT_TRUE(finished) << seen_count() << " seen; " << ended;
  EXPECT_OK(ended);
  std::multiset<std::string> want;
  for (int i = 0; i < kEach; ++i) {
    want.insert(absl::StrCat("first-", i));
    want.insert(absl::StrCat("second-", i));
  }
  EXPECT_EQ(seen, want);
}

// The active node loses its database connection and its process lives on: it stops writing (its
// lease runs out and it exits as kLeaseLostExitCode, 76), and the standby takes over.
TEST_F(FailoverTest, AnActiveNodeCutOffFromItsDatabaseStopsAndTheStandbyTakesOver) {
  LoopbackProxy to_db(SharedPostgres()->port());
  const std::string via_proxy = absl::StrReplaceAll(
      dsn_, {{absl::StrCat("port=", SharedPostgres()->port()),
              absl::StrCat("port=", to_db.address().substr(to_db.address().rfind(':') + 1))}});
  a1_->set_postgres(via_proxy);
  a2_->set_postgres(dsn_);
  ASSERT_OK(a1_->Start());
  a2_->Launch();
  ASSERT_OK(b_->Start());
  auto pair_client = PairClient();
  ASSERT_OK(pair_client->Publish(SampleNotice("before", {kB})).status());

  to_db.SetDown(true);  // a1 can no longer reach PostgreSQL; its process runs on
  ASSERT_OK(a2_->WaitListening(absl::Seconds(15))) << a2_->log();
  ASSERT_TRUE(WaitFor([&] { return a1_->Exited(); }, absl::Seconds(10))) << a1_->log();
  EXPECT_EQ(a1_->exit_status(), 76) << a1_->log();
  EXPECT_THAT(a1_->log(), HasSubstr("writer lease lost"));
  to_db.SetDown(false);

  // The new active node goes on from where the old one stopped.
  auto r = pair_client->Publish(SampleNotice("after", {kB}));
  ASSERT_OK(r.status());
  EXPECT_EQ(r->deliveries(0).seq(), 2u);
  auto b_client = b_->NewClient();
  std::multiset<std::string> at_b;
  ASSERT_TRUE(WaitFor([&] {
    at_b = InboxIds(b_client.get());
    return at_b.size() >= 2;
  }, absl::Seconds(30)));
  EXPECT_EQ(at_b, (std::multiset<std::string>{"after", "before"}));
}

// The active node freezes (SIGSTOP: its machine stops answering, its connections stay open): the
// standby takes over once the lease runs out, the office's client and the peer move to it, and
// the frozen node, woken, finds its lease taken and stops without writing.
TEST_F(FailoverTest, AFrozenActiveNodeIsReplacedAndStopsWhenItWakes) {
  ASSERT_NO_FATAL_FAILURE(StartPair());
  auto pair_client = PairClient();
  auto b_client = b_->NewClient();
  ASSERT_OK(pair_client->Publish(SampleNotice("before", {kB})).status());
  ASSERT_OK(b_client->Publish(SampleNotice("b-before", {kA})).status());
  auto a_client = PairClient();
  ASSERT_TRUE(WaitFor([&] { return InboxIds(a_client.get()).size() == 1; }, absl::Seconds(15)));

  ASSERT_OK(a1_->Freeze());
  const absl::Time frozen = absl::Now();
  auto r = pair_client->Publish(SampleNotice("after", {kB}));
  ASSERT_OK(r.status());
  EXPECT_EQ(r->deliveries(0).seq(), 2u);
  EXPECT_LT(absl::Now() - frozen, absl::Seconds(10));
  ASSERT_OK(a2_->WaitListening(absl::Seconds(1))) << a2_->log();
  ASSERT_OK(b_client->Publish(SampleNotice("b-after", {kA})).status());

  auto a2_client = a2_->NewClient();
  std::multiset<std::string> at_b, at_a;
  ASSERT_TRUE(WaitFor([&] {
    at_b = InboxIds(b_client.get());
    at_a = InboxIds(a2_client.get());
    return at_b.size() >= 2 && at_a.size() >= 2;
  }, absl::Seconds(30))) << at_b.size() << " at 360102, " << at_a.size() << " at 440305";
  EXPECT_EQ(at_b, (std::multiset<std::string>{"after", "before"}));
  EXPECT_EQ(at_a, (std::multiset<std::string>{"b-after", "b-before"}));

  ASSERT_OK(a1_->Thaw());
  ASSERT_TRUE(WaitFor([&] { return a1_->Exited(); }, absl::Seconds(10))) << a1_->log();
  EXPECT_EQ(a1_->exit_status(), 76) << a1_->log();
  EXPECT_THAT(a1_->log(), HasSubstr("writer lease lost"));
  EXPECT_EQ(a2_->Head(kB), 2);
}

// The active node freezes in the middle of a write transaction (the test build stops itself,
// SIGSTOP, inside its second publish): its session holds the lease row's share lock, so the standby
// can take over only once PostgreSQL has ended that session (idle_in_transaction_session_timeout,
// one lease ttl). The publish the frozen node never committed is retried by the client on the
// standby and stored there once; the frozen node, woken, stops without writing.
TEST_F(FailoverTest, AnActiveNodeFrozenInsideAWriteTransactionIsReplaced) {
  a1_->set_env("CASEWAY_FAULTS=freeze_in_publish=2");
  ASSERT_NO_FATAL_FAILURE(StartPair());
  auto pair_client = PairClient();
  ASSERT_OK(pair_client->Publish(SampleNotice("before", {kB})).status());

  const absl::Time frozen = absl::Now();
  auto r = pair_client->Publish(SampleNotice("during", {kB}));  // a1 freezes inside it
  ASSERT_OK(r.status());
  EXPECT_EQ(r->deliveries(0).seq(), 2u);
  EXPECT_LT(absl::Now() - frozen, absl::Seconds(15));
  ASSERT_OK(a2_->WaitListening(absl::Seconds(1))) << a2_->log();

  auto b_client = b_->NewClient();
  std::multiset<std::string> at_b;
  ASSERT_TRUE(WaitFor([&] {
    at_b = InboxIds(b_client.get());
    return at_b.size() >= 2;
  }, absl::Seconds(30))) << at_b.size() << " at 360102";
  EXPECT_EQ(at_b, (std::multiset<std::string>{"before", "during"}));

  ASSERT_OK(a1_->Thaw());
  ASSERT_TRUE(WaitFor([&] { return a1_->Exited(); }, absl::Seconds(10))) << a1_->log();
  EXPECT_EQ(a1_->exit_status(), 76) << a1_->log();
  EXPECT_THAT(a1_->log(), HasSubstr("writer lease lost"));
  EXPECT_EQ(a2_->Published(), 2);
  EXPECT_EQ(a2_->Head(kB), 2);
}

// A standby that is stopped while it waits exits cleanly, and a node of a pair refuses the
// SQLite-only commands with the way to do it on PostgreSQL.
TEST_F(FailoverTest, AStandbyStopsCleanlyAndBackupPointsToPostgresTools) {
  a1_->set_postgres(dsn_);
  a2_->set_postgres(dsn_);
  ASSERT_OK(a1_->Start());
  a2_->Launch();
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(a2_->Stop(), 0) << a2_->log();
  EXPECT_THAT(a2_->log(), HasSubstr("stopped while standby"));
  RunResult backup = RunCommand({BinDir() + "/caseway-node", "backup", "--config",
                                 a1_->config_path(), "--to", dir_.path() + "/copy.db"});
  EXPECT_EQ(backup.exit_code, 2);
  EXPECT_THAT(backup.err, HasSubstr("pg_dump"));
}

}  // namespace
}  // namespace caseway::testing
