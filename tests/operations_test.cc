// Operating a node (issue #13): the Prometheus endpoint scraped over HTTP during an exchange,
// `caseway status --check` and its exit status, and how an outage is logged. Real caseway-node
// processes over mutual TLS on 127.0.0.1.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config.h"
#include "common/tls.h"
#include "tests/testing/audited_pair.h"
#include "common/digest.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;


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

// Two peered nodes, A (360102) and B (440305), not started (tests/testing/audited_pair.h).
class OperationsTest : public AuditedPairTest {
 protected:
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

  int metrics_port_ = 0;
};

// The names of a process's threads (/proc/PID/task/*/comm).
std::set<std::string> ThreadNames(pid_t pid) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.insert(name);
  }
  return names;
}

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

  // The node's own threads carry names, so that top -H and perf say which one works
  // (docs/operator.md, "Threads"): the writer, the exchange's and the inbox's dispatchers, the
  // WAL checkpoint, and at B the subscriber to A and its session's storer.
  const std::set<std::string> a_threads = ThreadNames(a_->pid());
  for (const char* name : {"cw-writer", "cw-exchange", "cw-inbox", "cw-checkpoint"}) {
    EXPECT_EQ(a_threads.count(name), 1u) << name << " among " << absl::StrJoin(a_threads, ", ");
  }
  // The storer lives as long as a connected session: waited for, in case B is reconnecting.
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::set<std::string> b_threads = ThreadNames(b_->pid());
        return b_threads.count(absl::StrCat("cw-sub-", kA)) == 1 &&
               b_threads.count(absl::StrCat("cw-store-", kA)) == 1;
      },
      absl::Seconds(15)))
      << absl::StrJoin(ThreadNames(b_->pid()), ", ");

  // A refusal is counted by its code.
  v1::Notice bad = SampleNotice("m-bad", {kB});
  bad.clear_case_id();
  EXPECT_FALSE(a->Publish(bad).ok());
  EXPECT_EQ(Sample(Scrape(), "caseway_rpc_requests_total",
                   {{"method", "Gateway/Publish"}, {"code", "INVALID_ARGUMENT"}}),
            1);

  // A notice id stored with other content fails inside the store's transaction: the writer,
  // which ran the group without savepoints, rolls it back, runs it again with one around each
  // operation, and counts that.
  // (A group that also holds an operation not marked rerunnable, rare, takes savepoints from the
  // start and runs once: hence up to three tries.)
  EXPECT_EQ(Sample(Scrape(), "caseway_commit_groups_rerun_total"), 0);
  v1::Notice conflict = SampleNotice("m-0", {kB});
  conflict.set_case_id("case-m-other");
  for (int i = 0; i < 3 && Sample(Scrape(), "caseway_commit_groups_rerun_total") == 0; ++i) {
    EXPECT_EQ(a->Publish(conflict).status().code(), absl::StatusCode::kAlreadyExists);
  }
  EXPECT_GE(Sample(Scrape(), "caseway_commit_groups_rerun_total").value_or(0), 1);

  // Methods no service serves are counted as one "unknown": a client cannot add series.
  {
    const std::string office = pki_->Client(kA, "office");
    auto creds = common::ChannelCredentials(
        common::TlsFiles{pki_->ca(), office + ".crt", office + ".key"});
    ASSERT_OK(creds);
    grpc::GenericStub stub(grpc::CreateChannel(a_->address(), *creds));
    for (const char* path : {"/caseway.v1.Gateway/Nonesuch1", "/caseway.v1.Nonesuch/Two"}) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      grpc::Slice slice(std::string("\x08\x01", 2));
      grpc::ByteBuffer request(&slice, 1), response;
      std::promise<grpc::Status> done;
      stub.UnaryCall(&ctx, path, grpc::StubOptions(), &request, &response,
                     [&](grpc::Status st) { done.set_value(st); });
      EXPECT_EQ(done.get_future().get().error_code(), grpc::StatusCode::UNIMPLEMENTED) << path;
    }
    text = Scrape();
    EXPECT_EQ(Sample(text, "caseway_rpc_requests_total",
                     {{"method", "unknown"}, {"code", "UNIMPLEMENTED"}}),
              2);
    EXPECT_THAT(text, Not(HasSubstr("Nonesuch")));
  }

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
  // A peer down for less than --down-for (1m) is a restart, not a problem...
  r = Cli(*a_, {"status", "--check"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // ...unless the operator says otherwise.
  r = Cli(*a_, {"status", "--check", "--down-for", "0s"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("problem: ", kB, ": subscription not connected")));
  EXPECT_THAT(r.err, Not(HasSubstr("not acknowledged")));  // the backlog is fresh
  EXPECT_THAT(r.err, Not(HasSubstr("inbox:")));
  // Plain status still exits 0: only --check judges.
  EXPECT_EQ(Cli(*a_, {"status"}).exit_code, 0);
  // A node that cannot be reached is exit status 2, not a problem found.
  r = RunCommand({BinDir() + "/caseway", "status", "--check", "--address", b_->address(), "--ca",
                  pki_->ca(), "--cert", pki_->Client(kB, "office") + ".crt", "--key",
                  pki_->Client(kB, "office") + ".key"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;

  // Twenty minutes later on A's clock: the backlog has waited past 15 minutes, and the peer has
  // been silent past --down-for.
  a_->SetClockOffset(absl::Minutes(20));
  r = Cli(*a_, {"status", "--check"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("problem: ", kB, ": subscription not connected")));
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

  // A renewal that replaced the key but not the certificate: the node keeps serving the old pair
  // (this very call works) and says so.
  const std::string files = pki_->Node(kA);
  ASSERT_EQ(RunCommand({"/bin/cp", pki_->Node(kB) + ".key", files + ".key"}).exit_code, 0);
  r = Cli(*a_, {"status", "--check", "--cert-days", "10"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("problem: certificate: tls.key_file: the key is not the certificate's"));
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

// Sh runs a shell command line (a step of the operator's runbook) and returns its result.
RunResult Sh(const std::string& line) { return RunCommand({"/bin/sh", "-c", line}); }

// A county joins without handing over a key: it makes its TLS key and signing key on its own
// machine and sends a certificate request and its public signing key; the coordinating office
// signs and updates the directory. No node holds ca.key and the CA holds no key of the county.
// `caseway-node --check` opens every file as the user it runs as: a key the node's user cannot
// read, or one that is not the certificate's, is exit 2 naming the path.
TEST_F(OperationsTest, AJoiningCountyKeepsItsKeysAndCheckOpensEveryFileAsItsUser) {
  const std::string pki = pki_->dir();
  const std::string county = dir_.path() + "/county";
  const std::string script = SourceDir() + "/deploy/pki.sh";
  // The harness made every node's files at its CA; this county makes its own instead.
  ASSERT_EQ(Sh("rm " + pki + "/nodes/" + kA + ".key " + pki + "/nodes/" + kA + ".sign.key " +
               pki + "/nodes/" + kA + ".crt")
                .exit_code,
            0);
  RunResult r = Sh("bash " + script + " request " + county + " " + kA + " && bash " + script +
                   " signing-key " + county + " " + kA);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("send ", county, "/", kA, ".csr")));
  // At the CA: only the request and the public key arrive.
  r = Sh("bash " + script + " sign " + pki + " " + county + "/" + kA + ".csr " + kA + " " + county +
         "/" + kA + ".sign.pub");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Back at the county: the certificate (the CA and directory stay where the harness keeps them).
  ASSERT_EQ(Sh("cp " + pki + "/nodes/" + kA + ".crt " + county + "/").exit_code, 0);
  EXPECT_EQ(Sh("test -e " + county + "/ca.key").exit_code, 1);
  EXPECT_EQ(Sh("ls " + pki + "/nodes/" + kA + ".key " + pki + "/nodes/" + kA + ".sign.key").exit_code,
            2);  // neither exists at the CA
  // A request made at the CA is refused: keys are made where they stay.
  EXPECT_EQ(Sh("bash " + script + " request " + pki + " " + kA).exit_code, 2);

  a_->set_tls_files(county + "/" + kA + ".crt", county + "/" + kA + ".key");
  a_->set_signing_files(county + "/" + kA + ".sign.key", pki + "/directory.yaml");
  a_->WriteConfig();
  const std::string node = BinDir() + "/caseway-node";
  r = RunCommand({node, "--config", a_->config_path(), "--check"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("every file it names can be read by this user"));

  // As another user (the node's, under systemd) the root-only key cannot be read.
  ASSERT_EQ(Sh("chmod 755 " + dir_.path() + " " + county + " && chmod 644 " + a_->config_path())
                .exit_code,
            0);
  r = RunCommand({"/usr/sbin/runuser", "-u", "nobody", "--", node, "--config", a_->config_path(),
                  "--check"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(county + "/" + kA + ".key"));

  // A key that is not the certificate's (a renewal that replaced one file of the two).
  a_->set_tls_files(county + "/" + kA + ".crt", pki_->Node(kB) + ".key");
  a_->WriteConfig();
  r = RunCommand({node, "--config", a_->config_path(), "--check"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("tls.key_file"));
  EXPECT_THAT(r.err, HasSubstr("the key is not the certificate's"));

  // With its own files the county exchanges with a peer, both ways, signatures verified.
  a_->set_tls_files(county + "/" + kA + ".crt", county + "/" + kA + ".key");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  ASSERT_OK(a_->NewClient()->Publish(SampleNotice("j-1", {kB})));
  ASSERT_OK(b_->NewClient()->Publish(SampleNotice("j-2", {kA})));
  EXPECT_TRUE(WaitFor([&] { return b_->InboxTotal() == 1; },
                      absl::Seconds(15)));
  EXPECT_TRUE(WaitFor([&] { return a_->InboxTotal() == 1; },
                      absl::Seconds(15)));
}

// A renewed certificate and key, switched in place while the node runs, are served to new
// connections and presented to peers within tls.reload_interval: with the old certificate then
// revoked at the peer, the exchange continues both ways, and no publish fails meanwhile.
TEST_F(OperationsTest, ARenewedCertificateIsTakenUpWhileTheNodeRunsAndNoPublishFails) {
  const std::string pki = pki_->dir();
  const std::string script = SourceDir() + "/deploy/pki.sh";
  const std::string tls = dir_.path() + "/tlsA";
  const std::string issued = pki_->Node(kA);
  // The operator's layout: one directory per version, `current` a symlink switched atomically.
  ASSERT_EQ(Sh("mkdir -p " + tls + "/v1 && cp " + issued + ".crt " + tls + "/v1/node.crt && cp " +
               issued + ".key " + tls + "/v1/node.key && ln -s v1 " + tls + "/current")
                .exit_code,
            0);
  a_->set_tls_files(tls + "/current/node.crt", tls + "/current/node.key");
  a_->set_signing_files(issued + ".sign.key", pki + "/directory.yaml");
  a_->set_tls_yaml("  reload_interval: 1s\n");
  const std::string crl_dir = dir_.path() + "/crl";
  ASSERT_EQ(Sh("mkdir -p " + crl_dir).exit_code, 0);
  b_->set_tls_yaml("  crl_dir: " + crl_dir + "\n  crl_reload_interval: 1s\n");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());

  const std::string client = pki_->Client(kA, "office");  // issued before the threads start
  // A publisher that never stops while the certificate changes (bounded: 20 s, 3,000 notices).
  std::atomic<bool> stop{false};
  std::atomic<int> published{0}, failed{0};
  std::string first_failure;
  std::thread publisher([&] {
    auto client = a_->NewClient();
    const absl::Time end = absl::Now() + absl::Seconds(20);
    for (int i = 0; !stop && i < 3000 && absl::Now() < end; ++i) {
      auto r = client->Publish(SampleNotice(absl::StrCat("r-", i), {kB}));
      if (r.ok()) {
        ++published;
      } else if (failed++ == 0) {
        first_failure = r.status().ToString();
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
  });
  auto served_serial = [&] {
    return Sh("echo | /usr/bin/openssl s_client -connect " + a_->address() + " -CAfile " +
              pki_->ca() + " -cert " + client + ".crt -key " + client +
              ".key 2>/dev/null | /usr/bin/openssl x509 -noout -serial")
        .out;
  };
  const std::string old_serial = served_serial();
  ASSERT_THAT(old_serial, HasSubstr("serial="));
  absl::SleepFor(absl::Milliseconds(500));

  // Renew: a new key and certificate in v2, then the switch.
  RunResult r = Sh("bash " + script + " node " + pki + " " + kA + " >/dev/null && mkdir " + tls +
                   "/v2 && cp " + issued + ".crt " + tls + "/v2/node.crt && cp " + issued +
                   ".key " + tls + "/v2/node.key && ln -s v2 " + tls + "/next && mv -T " + tls +
                   "/next " + tls + "/current");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string new_serial = Sh("/usr/bin/openssl x509 -noout -serial -in " + tls + "/v2/node.crt").out;
  ASSERT_NE(new_serial, old_serial);
  EXPECT_TRUE(WaitFor([&] { return served_serial() == new_serial; }, absl::Seconds(10)));

  // Revoke the old certificate at B: A's subscription to B must come back with the new one.
  r = Sh("cd " + pki + " && mkdir -p ca-db && : > ca-db/index.txt && "
         "printf '[ca]\ndefault_ca=d\n[d]\ndatabase=ca-db/index.txt\ncertificate=ca.crt\n"
         "private_key=ca.key\ndefault_md=sha256\ndefault_crl_days=7\n' > ca-db/ca.cnf && "
         "openssl ca -config ca-db/ca.cnf -revoke " + tls + "/v1/node.crt 2>/dev/null && "
         "openssl ca -config ca-db/ca.cnf -gencrl -out " + crl_dir + "/ca.crl 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // B has read the CRL once it refuses the old certificate: A's stream on its old connection
  // ends UNAUTHENTICATED, which proves the old connection is no longer what carries the exchange.
  // (A may already have reconnected on its own: then the old connection is gone anyway.)
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::string log = a_->log();
        return absl::StrContains(log, "is revoked") ||
               absl::StrContains(log, "certificate renewed: reconnecting");
      },
      absl::Seconds(15)));
  ASSERT_OK(b_->NewClient()->Publish(SampleNotice("after-revocation", {kA})));
  EXPECT_TRUE(WaitFor([&] { return a_->InboxTotal() == 1; },
                      absl::Seconds(20)))
      << a_->log().substr(a_->log().size() > 4000 ? a_->log().size() - 4000 : 0);

  stop = true;
  publisher.join();
  EXPECT_EQ(failed.load(), 0) << first_failure;
  EXPECT_GT(published.load(), 50);
  EXPECT_TRUE(WaitFor(
      [&] { return b_->InboxTotal() == published.load(); },
      absl::Seconds(20)));
  EXPECT_EQ(DistinctNotices(b_->InboxItems()), published.load());
}

// FileHolds says whether `path` (a database file or its WAL) contains `needle` as raw bytes.
bool FileHolds(const std::string& path, const std::string& needle) {
  auto bytes = common::ReadFile(path);
  return bytes.ok() && bytes->find(needle) != std::string::npos;
}

// Retention: a month after they settled, the bodies of what was delivered, receipted, taken
// and owes no reply are gone from both nodes' files (a query answer's too), what still owes a
// reply stays, and the coordinator's audit verifies and reconciles exactly as before the purge.
TEST_F(OperationsTest, RetentionRemovesSettledPersonalDataAndTheAuditStillReconciles) {
  for (NodeProcess* n : {a_.get(), b_.get()}) {
    n->set_storage_yaml("  retention: 720h\n  purge_interval: 1s\n");
    n->SetClockOffset(absl::ZeroDuration());
  }
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  // Settled: a residence change B takes. Still owed: a verification request B has not answered.
  v1::Notice settled = SampleNotice("ret-settled", {kB});
  settled.set_case_id("case-ret");
  settled.mutable_subject()->set_name("Settled Subject Name");
  v1::Notice owed = SampleNotice("ret-owed", {kB});
  owed.set_case_id("case-ret");
  owed.mutable_subject()->set_name("Owed Subject Name");
  owed.clear_residence_change();
  owed.mutable_verification_request()->set_request_id("vr-ret");
  owed.mutable_verification_request()->add_items("marital status");
  auto client = a_->NewClient();
  ASSERT_OK(client->Publish(settled).status());
  ASSERT_OK(client->Publish(owed).status());
  RunResult taken = Cli(*b_, {"inbox", "--ack"});
  ASSERT_EQ(taken.exit_code, 0) << taken.err;
  ASSERT_EQ(std::vector<std::string>(absl::StrSplit(taken.out, '\n', absl::SkipEmpty())).size(), 2u)
      << taken.out;
  // B answers the residence change (a feedback A takes); the verification request stays owed.
  v1::Notice feedback = SampleNotice("ret-feedback", {kA});
  feedback.clear_residence_change();
  feedback.set_case_id("case-ret");
  feedback.mutable_subject()->set_name("Settled Subject Name");
  feedback.set_in_reply_to("ret-settled");
  feedback.mutable_feedback()->set_outcome(v1::Feedback::OUTCOME_CONFIRMED);
  ASSERT_OK(b_->NewClient()->Publish(feedback).status());
  ASSERT_TRUE(WaitFor([&] {
    RunResult r = Cli(*a_, {"inbox", "--ack"});
    return absl::StrContains(r.out, "ret-feedback");
  }, absl::Seconds(15)));
  // A asks B about the case: the signed answer A keeps holds the notices B holds of it.
  v1::QueryPeerRequest ask;
  ask.set_peer(kB);
  ask.set_case_id("case-ret");
  auto answer = client->QueryPeer(ask);
  ASSERT_OK(answer.status());
  ASSERT_EQ(answer->parsed().notices_size(), 3);
  for (NodeProcess* n : {a_.get(), b_.get()}) {
    ASSERT_TRUE(WaitFor([&] {
      auto st = n->NewClient()->Status();
      return st.ok() && st->channels_size() == 1 && st->channels(0).acked() == st->channels(0).head();
    }, absl::Seconds(15)));
  }
  RunResult before = AuditUntil({"reconcile", a_->address(), b_->address()}, "PROVEN +2 +1 +3");
  ASSERT_EQ(before.exit_code, 0) << before.out << before.err;
  EXPECT_THAT(before.out, ::testing::ContainsRegex("PROVEN +2 +1 +3"));

  // A month and a day later.
  for (NodeProcess* n : {a_.get(), b_.get()}) n->SetClockOffset(absl::Hours(24 * 31));
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(a_->log(), "retention: personal data removed"); },
                      absl::Seconds(15)))
      << a_->log();
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(b_->log(), "retention: personal data removed"); },
                      absl::Seconds(15)));
  // Each node removed, in the same pass: A the residence change it published, the feedback it
  // took and the answer it was given; B the residence change it took and the feedback it sent.
  auto purge_line = [](const std::string& log) {
    for (absl::string_view line : absl::StrSplit(log, '\n')) {
      if (absl::StrContains(line, "retention: personal data removed")) return std::string(line);
    }
    return std::string();
  };
  for (const char* want : {"published=1", "received=1", "query_answers=1"}) {
    EXPECT_THAT(purge_line(a_->log()), HasSubstr(want));
  }
  for (const char* want : {"published=1", "received=1", "query_answers=0"}) {
    EXPECT_THAT(purge_line(b_->log()), HasSubstr(want));
  }
  // The settled name is nowhere in either node's files once the WAL is cut back; the one still
  // owed a reply is kept. The purge is logged with counts only.
  // (On PostgreSQL, no row holds it: its bytes leave the disk at the table's next VACUUM.)
  for (NodeProcess* n : {a_.get(), b_.get()}) {
    if (n->on_postgres()) {
      auto rows_holding = [&](const std::string& name) {
        const std::string has = "position(convert_to('" + name + "', 'UTF8') IN bytes) > 0";
        return n->Count("SELECT count(*) FROM notice WHERE " + has) +
               n->Count("SELECT count(*) FROM inbox WHERE " + has);
      };
      EXPECT_EQ(rows_holding("Settled Subject Name"), 0) << n->jurisdiction();
      EXPECT_GT(rows_holding("Owed Subject Name"), 0) << n->jurisdiction();
    } else {
      EXPECT_TRUE(WaitFor([&] {
        return !FileHolds(n->db_path(), "Settled Subject Name") &&
               !FileHolds(n->db_path() + "-wal", "Settled Subject Name");
      }, absl::Seconds(15))) << n->jurisdiction();
      EXPECT_TRUE(FileHolds(n->db_path(), "Owed Subject Name") ||
                  FileHolds(n->db_path() + "-wal", "Owed Subject Name"))
          << n->jurisdiction();
    }
    EXPECT_THAT(n->log(), Not(HasSubstr("Subject Name")));
  }
  // The case is found by the notice still held only; the purged one's evidence stays provable.
  auto found = client->Case("case-ret");
  ASSERT_OK(found.status());
  ASSERT_EQ(found->events_size(), 1);
  EXPECT_EQ(found->events(0).notice().notice_id(), "ret-owed");
  RunResult evidence = Audit({"evidence", a_->address(), "ret-settled"});
  EXPECT_EQ(evidence.exit_code, 0) << evidence.out << evidence.err;
  EXPECT_THAT(evidence.out, HasSubstr("body purged under the node's retention period"));
  EXPECT_THAT(evidence.out, HasSubstr("OK: every signature and digest verifies"));
  // The audit: the same exchanges, proven as before; the query paired by its digests.
  RunResult after = AuditUntil({"reconcile", a_->address(), b_->address()}, "PROVEN +2 +1 +3");
  EXPECT_EQ(after.exit_code, 0) << after.out << after.err;
  EXPECT_THAT(after.out, ::testing::ContainsRegex("PROVEN +2 +1 +3"));
  EXPECT_THAT(after.out, HasSubstr("OK: every exchange matched"));
  RunResult all = Audit({"reconcile", a_->address(), b_->address(), "--bundle-all"});
  EXPECT_THAT(all.out, HasSubstr("purged the answer under its retention period"));
}

// A county rotates its signing key while both nodes exchange without pause: it makes the new
// key, the coordinating office lists it (the old one valid an hour longer) and every node takes
// the new directory up by itself; the county moves the key into place and its node signs with it
// from then on, recording the change in its log. No publish fails, and the coordinator's audit
// verifies everything, what the old key signed and what the new one did.
TEST_F(OperationsTest, ASigningKeyIsRotatedWhileTheNodesExchangeAndEarlierEvidenceStillVerifies) {
  // The key file and the directory are looked at every tls.reload_interval.
  for (NodeProcess* n : {a_.get(), b_.get()}) n->set_tls_yaml("  reload_interval: 1s\n");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto client = a_->NewClient();
  for (int i = 1; i <= 10; ++i) {
    ASSERT_OK(client->Publish(SampleNotice(absl::StrCat("k-", i), {kB})).status());
  }
  std::atomic<bool> stop{false};
  std::atomic<int> published{10}, failed{0};
  std::thread publisher([&] {
    auto c = a_->NewClient();
    for (int i = 11; i <= 2000 && !stop; ++i) {
      if (c->Publish(SampleNotice(absl::StrCat("k-", i), {kB})).ok()) {
        ++published;
      } else {
        ++failed;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const std::string pki = SourceDir() + "/deploy/pki.sh";
  const std::string county = dir_.path() + "/county";
  RunResult next = RunCommand({"/bin/bash", pki, "next-signing-key", county, kA});
  ASSERT_EQ(next.exit_code, 0) << next.err;
  RunResult rotate = RunCommand({"/bin/bash", pki, "rotate", pki_->dir(), kA,
                                 county + "/360102.sign.next.pub", "1 hour"});
  ASSERT_EQ(rotate.exit_code, 0) << rotate.err;
  EXPECT_THAT(rotate.err, HasSubstr("360102's previous key signs until"));
  for (NodeProcess* n : {a_.get(), b_.get()}) {
    EXPECT_TRUE(WaitFor([&] { return absl::StrContains(n->log(), "federation directory reloaded"); },
                        absl::Seconds(20)))
        << n->jurisdiction();
  }
  // Until the county installs it, `status --check` counts the old key's remaining grace.
  RunResult waiting = Cli(*a_, {"status", "--check"});
  EXPECT_EQ(waiting.exit_code, 1) << waiting.out << waiting.err;
  EXPECT_THAT(waiting.out + waiting.err,
              ::testing::ContainsRegex("signing key: the federation directory accepts it for "
                                       "(59m|1h)[^\n]* more, until "));
  // The county installs its new key over the file its node reads.
  ASSERT_EQ(std::rename((county + "/360102.sign.next.key").c_str(),
                        (pki_->dir() + "/nodes/360102.sign.key").c_str()),
            0);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(a_->log(), "signing key rotated"); },
                      absl::Seconds(20)));
  const int before = published;
  ASSERT_TRUE(WaitFor([&] { return published >= before + 20; }, absl::Seconds(20)));
  stop = true;
  publisher.join();
  EXPECT_EQ(failed, 0);
  ASSERT_TRUE(WaitFor([&] {
    auto st = client->Status();
    return st.ok() && st->channels_size() == 1 &&
           st->channels(0).acked() == static_cast<uint64_t>(published.load());
  }, absl::Seconds(20)));
  RunResult settled = Cli(*a_, {"status"});
  EXPECT_THAT(settled.out, Not(HasSubstr("signing key accepted until")));
  // The node records the key it signs with in its exchange log, each time it changes: the key
  // of its first start, then the new one.
  EXPECT_THAT(a_->log(), Not(HasSubstr("not taken up")));
  std::vector<std::string> recorded;
  for (const auto& e : a_->LogEntries()) {
    if (e.kind() == v1::LogEntry::KIND_SIGNING_KEY) recorded.push_back(common::ToHex(e.signing_key()));
  }
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_NE(recorded[0], recorded[1]);
  RunResult pub = RunCommand({"/bin/sh", "-c",
                              "openssl pkey -pubin -in " + county +
                                  "/360102.sign.next.pub -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \\n'"});
  EXPECT_EQ(recorded[1], pub.out);
  // Every exchange proven, those signed before the rotation with the old key, and a notice's
  // evidence from before it verifies.
  const std::string proven = absl::StrCat("PROVEN +", published.load(), " +0 +", published.load());
  RunResult audit = AuditUntil({"reconcile", a_->address(), b_->address()}, proven);
  EXPECT_EQ(audit.exit_code, 0) << audit.out << audit.err;
  EXPECT_THAT(audit.out, ::testing::ContainsRegex(proven));
  RunResult early = Audit({"evidence", a_->address(), "k-1"});
  EXPECT_EQ(early.exit_code, 0) << early.out << early.err;
  EXPECT_THAT(early.out, HasSubstr("OK: every signature and digest verifies"));
}

}  // namespace
}  // namespace caseway::testing
