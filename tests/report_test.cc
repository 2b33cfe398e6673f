// The assessment end to end: three real nodes on movable clocks exchange requests that are
// receipted and answered on time, late or never, one node's clock runs ten days behind (it
// back-dates everything it signs); `caseway audit report` computes the period's indicators from
// their verified logs, and the numbers are checked against the scenario. The HTML report is opened
// in headless Chromium: no console errors, the numbers in the page equal the JSON, a screenshot
// and an A4-landscape PDF are kept with the test output.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "absl/strings/str_cat.h"
#include "caseway/v1/audit.pb.h"
#include "caseway/v1/exchange_log.pb.h"
#include "common/policy.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

namespace fs = std::filesystem;
using ::google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

constexpr char kA[] = "360102";  // Jiangxi: the origin of every request
constexpr char kB[] = "440305";  // Guangdong: answers one request in time, one late, one never
constexpr char kC[] = "360111";  // Jiangxi: its clock runs ten days behind

constexpr char kPolicy[] = R"(version: report-test-1
rules:
  - {kind: verification_request, priority: PRIORITY_SUBJECT, reply: {days: 15}}
targets: [{year: 2026, intra_province: 85, inter_province: 80}]
)";

absl::Time Cst(int m, int d, int hh = 10) {
  return absl::FromCivil(absl::CivilSecond(2026, m, d, hh, 0, 0), common::ChinaStandardTime());
}

v1::Notice Request(const std::string& id, const std::string& dest) {
  v1::Notice n = SampleNotice(id, {dest});
  n.clear_residence_change();
  n.set_priority(v1::PRIORITY_SUBJECT);
  n.mutable_verification_request()->set_request_id("vr-" + id);
  n.mutable_verification_request()->add_items("certificate validity");
  return n;
}

v1::Notice Reply(const std::string& id, const std::string& answers, const std::string& to) {
  v1::Notice n = SampleNotice(id, {to});
  n.clear_residence_change();
  n.set_in_reply_to(answers);
  n.mutable_feedback()->set_outcome(v1::Feedback::OUTCOME_CONFIRMED);
  return n;
}

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    auditor_ = pki_->Auditor("coordinator");
    std::ofstream(dir_.path() + "/policy.yaml") << kPolicy;
    for (const char* j : {kA, kB, kC}) {
      nodes_[j] = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), j);
      nodes_[j]->set_extra_yaml(absl::StrCat("policy_file: ", dir_.path(), "/policy.yaml\n"));
    }
    for (auto& [j, n] : nodes_) {
      for (auto& [k, p] : nodes_) {
        if (j != k) n->AddPeer(*p);
      }
    }
  }

  // MoveTo sets A's and B's clocks to `t` (CST) and C's ten days behind.
  void MoveTo(absl::Time t) {
    const absl::Duration offset = t - absl::Now();
    nodes_[kA]->SetClockOffset(offset);
    nodes_[kB]->SetClockOffset(offset);
    nodes_[kC]->SetClockOffset(offset - absl::Hours(24 * 10));
  }

  // CosignedSince: `witness` has logged a cosignature of `subject`'s checkpoint of at least
  // `size` entries, at its own time `after` or later.
  bool CosignedSince(const std::string& witness, const std::string& subject, int64_t size,
                     absl::Time after) {
    for (const auto& e : nodes_[witness]->LogEntries()) {
      if (e.kind() != v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED || e.peer() != subject) {
        continue;
      }
      if (static_cast<int64_t>(e.last_seq()) >= size &&
          absl::FromUnixSeconds(e.time().seconds()) >= after) {
        return true;
      }
    }
    return false;
  }

  // Witnessed: A has cosigned `node`'s log up to its last event (witness records alone are
  // checkpointed only once a minute), at A's time `after` or later.
  void Witnessed(const std::string& node, absl::Time after) {
    const int64_t size = EventsSize(*nodes_[node]);
    ASSERT_TRUE(WaitFor([&] { return CosignedSince(kA, node, size, after); }, absl::Seconds(20)))
        << "A did not cosign " << node << "'s log of " << size << " entries";
  }

  // Tick makes `node` publish a check report to A so that its log grows and A cosigns it anew.
  void Tick(const std::string& node, const std::string& id) {
    ASSERT_OK(nodes_[node]->NewClient()->Publish(SampleNotice(id, {kA})));
  }

  bool InboxHas(const std::string& node, int64_t n) {
    return WaitFor([&] { return nodes_[node]->InboxTotal() >= n; },
                   absl::Seconds(20));
  }

  // Settled: every node's checkpoint covers every event it logged so far (witness records alone
  // are checkpointed less often), and every channel is receipted.
  void Settled() {
    for (auto& entry : nodes_) {
      NodeProcess* n = entry.second.get();
      const int64_t size = EventsSize(*n);
      ASSERT_TRUE(WaitFor([&] { return n->CheckpointSize() >= size; },
                          absl::Seconds(20)));
      ASSERT_TRUE(WaitFor([&] { return n->Unreceipted() == 0; },
                          absl::Seconds(20)))
          << entry.first << " has unreceipted notices";
    }
  }

  RunResult Report(std::vector<std::string> extra) {
    std::vector<std::string> args = {"report", nodes_[kA]->address(), nodes_[kB]->address(),
                                     nodes_[kC]->address(), "--period", "2026-10", "--policy",
                                     dir_.path() + "/policy.yaml"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunCommand(AuditCommand(*pki_, auditor_, dir_.path(), args));
  }

  static const v1::AssessmentReport::Indicator* Row(const v1::AssessmentReport& r,
                                                    const std::string& indicator,
                                                    const std::string& origin,
                                                    const std::string& dest) {
    for (const auto& i : r.indicators()) {
      if (i.indicator() == indicator && i.origin() == origin && i.destination() == dest &&
          i.priority() == v1::PRIORITY_UNSPECIFIED) {
        return &i;
      }
    }
    return nullptr;
  }

  static std::string Detail(const v1::AssessmentReport& r, const std::string& notice_id) {
    std::string out;
    for (const auto& d : r.details()) {
      if (d.notice_id() == notice_id && d.indicator() != "receipt_rate" &&
          d.indicator() != "notification_timeliness") {
        absl::StrAppend(&out, d.problem(), d.clock() ? " clock" : "");
      }
    }
    return out;
  }

  // Chromium runs headless, with no network and a fresh profile (the flags the machine needs).
  RunResult Chromium(std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/chromium", "--headless", "--no-sandbox",
                                     "--disable-gpu", "--disable-quic", "--no-first-run",
                                     "--disable-background-networking", "--disable-component-update",
                                     "--disable-sync", "--enable-logging=stderr", "--v=0",
                                     "--user-data-dir=" + dir_.path() + "/chromium"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::string auditor_;
  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(ReportTest, TheReportCountsTheScenarioAndABackDatingNodeDoesNotGain) {
  MoveTo(Cst(10, 10));
  for (auto& [j, n] : nodes_) ASSERT_OK(n->Start());
  auto a = nodes_[kA]->NewClient();
  // Oct 10: three urgent requests and a departure notice to B, two urgent requests to C.
  for (const char* id : {"r1", "r2", "r3"}) ASSERT_OK(a->Publish(Request(id, kB)));
  ASSERT_OK(a->Publish(SampleNotice("k1", {kB})));
  for (const char* id : {"c1", "c2"}) ASSERT_OK(a->Publish(Request(id, kC)));
  ASSERT_TRUE(InboxHas(kB, 4));
  ASSERT_TRUE(InboxHas(kC, 2));
  Settled();

  // Oct 20 (C: Oct 10). B answers r1 in time. C answers c1, but by A's witness only on Oct 20,
  // after its deadline (Oct 15: C's own receipt claimed Sep 30); its clock says Oct 10.
  MoveTo(Cst(10, 20));
  Tick(kB, "tick-b1");
  Tick(kC, "tick-c1");
  Witnessed(kB, Cst(10, 20));
  Witnessed(kC, Cst(10, 20));
  ASSERT_OK(nodes_[kB]->NewClient()->Publish(Reply("f1", "r1", kA)));
  ASSERT_OK(nodes_[kC]->NewClient()->Publish(Reply("fc1", "c1", kA)));

  // Oct 28 (C: Oct 18): B answers r2, three days late. r3 and c2 are never answered.
  MoveTo(Cst(10, 28));
  Tick(kB, "tick-b2");
  Witnessed(kB, Cst(10, 28));
  ASSERT_OK(nodes_[kB]->NewClient()->Publish(Reply("f2", "r2", kA)));
  ASSERT_TRUE(InboxHas(kA, 5));
  Settled();

  const std::string html = dir_.path() + "/report.html";
  RunResult r = Report({"--format", "json", "--details", "--html", html});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  v1::AssessmentReport report;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &report).ok()) << r.out;
  EXPECT_EQ(report.period(), "2026-10");
  EXPECT_EQ(report.policy_version(), "report-test-1");

  // Receipts: B and C receipted everything at once; C's claims (ten days early) were moved to
  // when A sent the batches, and marked.
  const auto* rb = Row(report, "receipt_rate", kA, kB);
  ASSERT_NE(rb, nullptr) << r.out;
  EXPECT_EQ(rb->denominator(), 4u);
  EXPECT_EQ(rb->numerator(), 4u);
  EXPECT_EQ(rb->clock_marked(), 0u);
  EXPECT_EQ(rb->scope(), v1::SCOPE_INTER_PROVINCE);
  EXPECT_EQ(rb->target(), 80);
  const auto* rc = Row(report, "receipt_rate", kA, kC);
  ASSERT_NE(rc, nullptr);
  EXPECT_EQ(rc->denominator(), 2u);
  EXPECT_EQ(rc->numerator(), 2u);
  EXPECT_EQ(rc->clock_marked(), 2u);
  EXPECT_EQ(rc->scope(), v1::SCOPE_INTRA_PROVINCE);

  // Feedback: B answered 2 of 3 (1 in time); C 1 of 2 (0 in time, whatever its clock said).
  const auto* fb = Row(report, "feedback_rate", kA, kB);
  const auto* tb = Row(report, "timely_feedback_rate", kA, kB);
  ASSERT_NE(fb, nullptr);
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(fb->denominator(), 3u);
  EXPECT_EQ(fb->numerator(), 2u);
  EXPECT_EQ(tb->numerator(), 1u);
  EXPECT_TRUE(tb->below_target());
  const auto* tc = Row(report, "timely_feedback_rate", kA, kC);
  ASSERT_NE(tc, nullptr);
  EXPECT_EQ(tc->denominator(), 2u);
  EXPECT_EQ(tc->numerator(), 0u);
  EXPECT_EQ(Row(report, "feedback_rate", kA, kC)->numerator(), 1u);
  EXPECT_EQ(Detail(report, "r1"), "");
  EXPECT_EQ(Detail(report, "r2"), "LATE_REPLY");
  EXPECT_EQ(Detail(report, "r3"), "NO_REPLY");
  EXPECT_EQ(Detail(report, "c1"), "LATE_REPLY clock");
  EXPECT_EQ(Detail(report, "c2"), "NO_REPLY clock");
  for (const auto& d : report.details()) EXPECT_FALSE(d.evidence().empty());

  // The same numbers as a table and as CSV.
  RunResult table = Report({});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, ::testing::ContainsRegex(
                             "timely_feedback_rate +destination +360102 +440305 +inter +all +1/3 "));
  RunResult csv = Report({"--format", "csv"});
  EXPECT_THAT(csv.out, HasSubstr("2026-10,feedback_rate,destination,360102,360111,intra,all,1,2,50.00,85.00,true,"));

  // The page in headless Chromium: its numbers equal the JSON, no console errors.
  ASSERT_TRUE(fs::exists(html));
  RunResult dom = Chromium({"--dump-dom", "file://" + html});
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  EXPECT_THAT(dom.err, ::testing::Not(HasSubstr("Uncaught")));
  EXPECT_THAT(dom.err, ::testing::Not(HasSubstr(":ERROR:CONSOLE")));
  std::regex cell("data-indicator=\"([a-z_]+)\" data-origin=\"([0-9]+)\" data-destination=\"([0-9]+)\" "
                  "data-num=\"([0-9]+)\" data-den=\"([0-9]+)\"");
  int compared = 0;
  for (auto it = std::sregex_iterator(dom.out.begin(), dom.out.end(), cell); it != std::sregex_iterator();
       ++it) {
    const auto* row = Row(report, (*it)[1], (*it)[2], (*it)[3]);
    ASSERT_NE(row, nullptr) << (*it)[0];
    EXPECT_EQ(std::to_string(row->numerator()), (*it)[4]) << (*it)[0];
    EXPECT_EQ(std::to_string(row->denominator()), (*it)[5]) << (*it)[0];
    ++compared;
  }
  int expected = 0;
  for (const auto& i : report.indicators()) expected += i.priority() == v1::PRIORITY_UNSPECIFIED;
  EXPECT_EQ(compared, expected);
  EXPECT_THAT(dom.out, HasSubstr("及时反馈率"));
  EXPECT_THAT(dom.out, HasSubstr("<svg"));
  EXPECT_THAT(dom.out, HasSubstr("东湖区"));  // 360102's name from the bundled region table
  EXPECT_EQ(dom.out.find("<script"), std::string::npos);
  EXPECT_EQ(dom.out.find("http://"), dom.out.find("http://www.w3.org/2000/svg"))
      << "no external assets";

  // A screenshot and an A4-landscape PDF kept with the test output.
  const std::string out_dir = BinDir() + "/../Testing/report";
  fs::create_directories(out_dir);
  RunResult shot = Chromium({"--window-size=1400,2400", "--screenshot=" + out_dir + "/report.png",
                             "file://" + html});
  EXPECT_EQ(shot.exit_code, 0) << shot.err;
  EXPECT_GT(fs::file_size(out_dir + "/report.png"), 10000u);
  RunResult pdf = Chromium({"--no-pdf-header-footer", "--print-to-pdf=" + out_dir + "/report.pdf",
                            "file://" + html});
  EXPECT_EQ(pdf.exit_code, 0) << pdf.err;
  std::ifstream in(out_dir + "/report.pdf", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A4 landscape is 842 x 595 points (the PDF holds binary streams: std::regex, not gtest's).
  EXPECT_TRUE(std::regex_search(bytes, std::regex("/MediaBox \\[0 0 84[12](\\.[0-9]+)? 59[45](\\.[0-9]+)?\\]")))
      << "not A4 landscape";
  fs::copy_file(html, out_dir + "/report.html", fs::copy_options::overwrite_existing);

  // English labels on request, aggregated by province: Jiangxi -> Guangdong.
  RunResult en = Report({"--html", html, "--lang", "en", "--level", "province"});
  ASSERT_EQ(en.exit_code, 0) << en.err;
  std::ifstream page(html);
  std::string text((std::istreambuf_iterator<char>(page)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("Timely feedback rate"));
  EXPECT_THAT(text, HasSubstr("data-indicator=\"timely_feedback_rate\" data-origin=\"360000\" "
                              "data-destination=\"440000\" data-num=\"1\" data-den=\"3\""));
  EXPECT_THAT(text, HasSubstr("data-indicator=\"timely_feedback_rate\" data-origin=\"360000\" "
                              "data-destination=\"360000\" data-num=\"0\" data-den=\"2\""));
}

TEST_F(ReportTest, AReportNeedsVerifiedLogsAndAValidPeriod) {
  for (auto& [j, n] : nodes_) ASSERT_OK(n->Start());
  RunResult bad = RunCommand(AuditCommand(*pki_, auditor_, dir_.path(),
                                          {"report", nodes_[kA]->address(), "--period", "2026-13"}));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("period: \"2026-13\" is not a month like 2026-10"));
  // A tampered log: no report.
  ASSERT_OK(nodes_[kA]->NewClient()->Publish(SampleNotice("t1", {kB})));
  ASSERT_TRUE(InboxHas(kB, 1));
  Settled();
  nodes_[kA]->Stop();
  nodes_[kA]->Exec("UPDATE log_leaf SET bytes = bytes || " + nodes_[kA]->Bytes("01") +
                   " WHERE idx = 1");
  nodes_[kA]->set_exchange_log_yaml("  scrub_rate: 0\n");
  ASSERT_OK(nodes_[kA]->Start());
  RunResult r = Report({});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("rests on verified logs only"));
}

}  // namespace
}  // namespace caseway::testing
