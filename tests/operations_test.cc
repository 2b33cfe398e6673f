// Operating a node (issue #13): the Prometheus endpoint scraped over HTTP during an exchange,
// `caseway status --check` and its exit status, and how an outage is logged. Real caseway-node
// processes over mutual TLS on 127.0.0.1.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kA[] = "360102";  // Nanchang Donghu (Jiangxi)
constexpr char kB[] = "360111";  // Nanchang Qingshanhu (Jiangxi)

// Sample returns the value of the series `name` whose labels include every one of `labels`, from
// a scrape in Prometheus' text format (nullopt when there is none).
std::optional<double> Sample(const std::string& text, const std::string& name,
                             const std::map<std::string, std::string>& labels = {}) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t end = line.find_first_of("{ ");
    if (end == absl::string_view::npos || line.substr(0, end) != name) continue;
    bool all = true;
    for (const auto& [key, value] : labels) {
      all = all && absl::StrContains(line, absl::StrCat(key, "=\"", value, "\""));
    }
    if (!all) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) return v;
  }
  return std::nullopt;
}

class OperationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    a_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), kA);
    b_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), kB);
    a_->AddPeer(*b_);
    b_->AddPeer(*a_);
  }

  std::string Scrape() {
    auto got = HttpGet(metrics_port_, "/metrics");
    EXPECT_OK(got);
    if (!got.ok()) return "";
    EXPECT_EQ(got->first, 200);
    return got->second;
  }
  // WaitForSample waits until the series has `want`.
  bool WaitForSample(const std::string& name, const std::map<std::string, std::string>& labels,
                     double want) {
    return WaitFor([&] { return Sample(Scrape(), name, labels) == want; }, absl::Seconds(15));
  }

  RunResult Cli(NodeProcess& node, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinDir() + "/caseway"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (auto& f : node.CliFlags()) argv.push_back(f);
    return RunCommand(argv);
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::unique_ptr<NodeProcess> a_, b_;
  int metrics_port_ = 0;
};

// The endpoint serves what `caseway status` shows and what happened: channel positions and lag
// that rise while the destination is down and fall after, the subscription's state and last
// error, RPC results by code, group commits, the log. promtool accepts the exposition, and no
// personal data of the notices appears in it.
TEST_F(OperationsTest, MetricsFollowTheExchangeAndHoldNoPersonalData) {
  metrics_port_ = FreePort();
  a_->set_extra_yaml(absl::StrCat("metrics:\n  listen_address: 127.0.0.1:", metrics_port_, "\n"));
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  for (int i = 0; i < 5; ++i) ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("m-", i), {kB})));
  ASSERT_TRUE(WaitForSample("caseway_channel_acked", {{"destination", kB}}, 5));
  std::string text = Scrape();
  EXPECT_EQ(Sample(text, "caseway_channel_head", {{"destination", kB}}), 5);
  EXPECT_EQ(Sample(text, "caseway_channel_lag", {{"destination", kB}}), 0);
  EXPECT_EQ(Sample(text, "caseway_rpc_requests_total",
                   {{"method", "Gateway/Publish"}, {"code", "OK"}}),
            5);
  EXPECT_GT(Sample(text, "caseway_commit_duration_seconds_count").value_or(0), 0);
  EXPECT_GT(Sample(text, "caseway_commit_group_operations_sum").value_or(0), 0);
  EXPECT_GT(Sample(text, "caseway_log_entries").value_or(0), 0);
  EXPECT_GT(Sample(text, "caseway_certificate_expiry_seconds").value_or(0), 300 * 86400.0);
  EXPECT_EQ(Sample(text, "caseway_halted"), 0);
  EXPECT_TRUE(WaitForSample("caseway_subscription_connected", {{"origin", kB}}, 1));
  EXPECT_TRUE(Sample(Scrape(), "caseway_subscription_last_contact_timestamp_seconds",
                     {{"origin", kB}})
                  .has_value());

  // A refusal is counted by its code.
  v1::Notice bad = SampleNotice("m-bad", {kB});
  bad.clear_case_id();
  EXPECT_FALSE(a->Publish(bad).ok());
  EXPECT_EQ(Sample(Scrape(), "caseway_rpc_requests_total",
                   {{"method", "Gateway/Publish"}, {"code", "INVALID_ARGUMENT"}}),
            1);

  // The destination goes down: the lag rises and the subscription shows why.
  b_->Kill();
  for (int i = 5; i < 8; ++i) ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("m-", i), {kB})));
  text = Scrape();
  EXPECT_EQ(Sample(text, "caseway_channel_lag", {{"destination", kB}}), 3);
  EXPECT_GE(Sample(text, "caseway_channel_oldest_unacked_age_seconds", {{"destination", kB}})
                .value_or(-1),
            0);
  EXPECT_TRUE(WaitForSample("caseway_subscription_connected", {{"origin", kB}}, 0));
  EXPECT_TRUE(WaitForSample("caseway_subscription_last_error",
                            {{"origin", kB}, {"code", "UNAVAILABLE"}}, 1));

  // Back up: delivered, the lag falls to zero.
  ASSERT_OK(b_->Start());
  EXPECT_TRUE(WaitForSample("caseway_channel_lag", {{"destination", kB}}, 0));
  EXPECT_TRUE(WaitForSample("caseway_subscription_connected", {{"origin", kB}}, 1));
  text = Scrape();
  EXPECT_FALSE(Sample(text, "caseway_subscription_last_error", {{"origin", kB}}).has_value());

  // No personal data: not the name, the identity number, nor a case id.
  EXPECT_THAT(text, Not(HasSubstr("测试人")));
  EXPECT_THAT(text, Not(HasSubstr("11010519491231002X")));
  EXPECT_THAT(text, Not(HasSubstr("case-m-")));

  // Prometheus' own linter accepts the exposition.
  RunResult lint = RunCommand({"/usr/bin/promtool", "check", "metrics"}, text);
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
}

// `caseway status --check` exits 1 and names each problem an operator must act on, measured on
// the node's clock: a peer not connected, a backlog older than --backlog-age, an inbox the
// consumer leaves untaken past --inbox-age, a certificate within --cert-days of its end. A
// healthy node exits 0. --json prints every field, zeros too.
TEST_F(OperationsTest, StatusCheckNamesEachProblemAndExitsNonZero) {
  a_->SetClockOffset(absl::ZeroDuration());
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  auto b = b_->NewClient();
  ASSERT_OK(a->Publish(SampleNotice("s-1", {kB})));
  ASSERT_OK(b->Publish(SampleNotice("s-2", {kA})));  // stays in A's inbox: nobody consumes it
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = a->Status();
        return st.ok() && st->channels_size() == 1 && st->channels(0).acked() == 1 &&
               st->inbox_unacked() == 1 && st->subscriptions(0).state() == "connected";
      },
      absl::Seconds(15)));
  RunResult r = Cli(*a_, {"status", "--check"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("no problem found"));
  EXPECT_THAT(r.out, HasSubstr("LAST HEARD"));

  r = Cli(*a_, {"status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"halted\":\"\""));
  EXPECT_THAT(r.out, HasSubstr("\"lag\":\"0\""));
  EXPECT_THAT(r.out, HasSubstr("\"last_contact_at\":"));

  b_->Kill();
  ASSERT_OK(a->Publish(SampleNotice("s-3", {kB})));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = a->Status();
        return st.ok() && st->subscriptions(0).state() != "connected";
      },
      absl::Seconds(15)));
  r = Cli(*a_, {"status", "--check"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("problem: ", kB, ": subscription not connected")));
  EXPECT_THAT(r.err, Not(HasSubstr("not acknowledged")));  // the backlog is fresh
  EXPECT_THAT(r.err, Not(HasSubstr("inbox:")));
  // Plain status still exits 0: only --check judges.
  EXPECT_EQ(Cli(*a_, {"status"}).exit_code, 0);

  // Twenty minutes later on A's clock: the backlog has waited past 15 minutes.
  a_->SetClockOffset(absl::Minutes(20));
  r = Cli(*a_, {"status", "--check"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("problem: ", kB,
                                            ": 1 notice(s) not acknowledged, the oldest for 20m")));
  EXPECT_THAT(r.err, Not(HasSubstr("inbox:")));
  // The limits are the operator's.
  r = Cli(*a_, {"status", "--check", "--backlog-age", "1h"});
  EXPECT_THAT(r.err, Not(HasSubstr("not acknowledged")));
  EXPECT_EQ(Cli(*a_, {"status", "--check", "--backlog-age", "soon"}).exit_code, 2);

  // Two hours: the inbox too.
  a_->SetClockOffset(absl::Hours(2));
  r = Cli(*a_, {"status", "--check"});
  EXPECT_THAT(r.err, HasSubstr("problem: inbox: 1 notice(s) not taken by the local consumer"));
  EXPECT_THAT(r.err, Not(HasSubstr("certificate")));

  // 380 days: the certificate (397 days) ends within 30 days.
  a_->SetClockOffset(absl::Hours(24 * 380));
  r = Cli(*a_, {"status", "--check"});
  EXPECT_THAT(r.err, HasSubstr("problem: certificate: expires in"));
  r = Cli(*a_, {"status", "--check", "--cert-days", "10"});
  EXPECT_THAT(r.err, Not(HasSubstr("certificate")));
}

// A peer outage is logged at info when it starts, then quietly retried; once it outlasts the
// retries (three times exchange.backoff_max) it is logged at warn, once, and its end at info.
TEST_F(OperationsTest, AnOutageIsLoggedAtWarnOnceItOutlastsTheRetries) {
  a_->set_exchange_yaml("  backoff_initial: 0.05s\n  backoff_max: 0.3s\n");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = a->Status();
        return st.ok() && st->subscriptions(0).state() == "connected";
      },
      absl::Seconds(15)));
  const size_t before = a_->log().size();
  b_->Kill();
  auto outage_log = [&] { return a_->log().substr(before); };
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(outage_log(), "warn peer unreachable"); },
                      absl::Seconds(15)))
      << outage_log();
  absl::SleepFor(absl::Seconds(2));  // many more retries, none of them at info or warn
  const std::string log = outage_log();
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count(absl::StrCat("info subscription interrupted origin=", kB)), 1u) << log;
  EXPECT_EQ(count(absl::StrCat("warn peer unreachable origin=", kB)), 1u) << log;
  ASSERT_OK(b_->Start());
  EXPECT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(outage_log(), absl::StrCat("info peer reachable again origin=", kB));
      },
      absl::Seconds(15)))
      << outage_log();
}

}  // namespace
}  // namespace caseway::testing
