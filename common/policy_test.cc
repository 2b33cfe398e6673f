#include "common/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/digest.h"

namespace caseway::common {
namespace {

using ::caseway::v1::FederationPolicy;
using ::testing::HasSubstr;

// A calendar in the shape of China's official schedule: a holiday week with make-up Saturdays
// and Sundays around it (the dates here are test data, not a statement of any year's schedule).
constexpr char kPolicy[] = R"(
version: test-1
rules:
  - {kind: verification_request, priority: PRIORITY_SUBJECT, reply: {days: 15}}
  - {kind: verification_request, reply: {days: 30}, receipt_days: 2}
  - {kind: birth_service_registration, reply: {days: 15, working_days: true}, notify_days: 10}
targets:
  - {year: 2026, intra_province: 85, inter_province: 80}
  - {year: 2027, intra_province: 85, inter_province: 85}
period: {unit: UNIT_MONTH, cutoff_day: 20}
calendar:
  holidays: [2026-10-01, 2026-10-02, 2026-10-05, 2026-10-06, 2026-10-07]
  workdays: [2026-09-27, 2026-10-10]
scope_overrides:
  - {a: 110101, b: 130102, scope: SCOPE_INTRA_PROVINCE}
)";

Policy MustParse(const std::string& yaml) {
  auto p = Policy::Parse(yaml, "policy.yaml");
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : Policy::Default();
}

std::string ErrorOf(const std::string& yaml) {
  auto p = Policy::Parse(yaml, "policy.yaml");
  EXPECT_FALSE(p.ok());
  return p.ok() ? "" : std::string(p.status().message());
}

TEST(PolicyTest, TermsPreferTheRuleForThePriority) {
  Policy p = MustParse(kPolicy);
  auto urgent = p.TermsFor("verification_request", v1::PRIORITY_SUBJECT);
  ASSERT_TRUE(urgent.reply.has_value());
  EXPECT_EQ(urgent.reply->days(), 15u);
  EXPECT_EQ(urgent.receipt_days, 3u);  // the default: the urgent rule sets none
  auto normal = p.TermsFor("verification_request", v1::PRIORITY_NORMAL);
  EXPECT_EQ(normal.reply->days(), 30u);
  EXPECT_EQ(normal.receipt_days, 2u);
  auto report = p.TermsFor("check_report", v1::PRIORITY_NORMAL);
  EXPECT_FALSE(report.reply.has_value());
  EXPECT_EQ(report.notify_days, 30u);
}

TEST(PolicyTest, WorkingDaysSkipWeekendsAndHolidaysAndCountMakeUpDays) {
  Policy p = MustParse(kPolicy);
  // Friday 2026-09-25 + 15 working days: 28,29,30 (3), Oct 8,9 (5), Sat Oct 10 make-up (6),
  // 12..16 (11), 19..22 (15) -> Thursday Oct 22. Sunday Sep 27 is a make-up day too (+1): Oct 21.
  FederationPolicy::Limit l;
  l.set_days(15);
  l.set_working_days(true);
  EXPECT_EQ(p.DueDay(absl::CivilDay(2026, 9, 25), l), absl::CivilDay(2026, 10, 21));
  EXPECT_TRUE(p.IsWorkingDay(absl::CivilDay(2026, 9, 27)));    // make-up Sunday
  EXPECT_FALSE(p.IsWorkingDay(absl::CivilDay(2026, 10, 1)));   // holiday Thursday
  EXPECT_FALSE(p.IsWorkingDay(absl::CivilDay(2026, 10, 3)));   // plain Saturday
  EXPECT_TRUE(p.IsWorkingDay(absl::CivilDay(2026, 10, 8)));    // Thursday, not listed
  // Calendar days ignore the calendar.
  l.set_working_days(false);
  EXPECT_EQ(p.DueDay(absl::CivilDay(2026, 9, 25), l), absl::CivilDay(2026, 10, 10));
}

TEST(PolicyTest, WorkingDaysLeftCountsDownAndPastTheDeadline) {
  Policy p = MustParse(kPolicy);
  const absl::CivilDay due(2026, 10, 9);  // Friday after the holiday week
  EXPECT_EQ(p.WorkingDaysLeft(absl::CivilDay(2026, 9, 30), due), 2);  // Oct 8, 9
  EXPECT_EQ(p.WorkingDaysLeft(due, due), 0);
  EXPECT_EQ(p.WorkingDaysLeft(absl::CivilDay(2026, 10, 10), due), -1);  // make-up Saturday
  EXPECT_EQ(p.WorkingDaysLeft(absl::CivilDay(2026, 10, 11), due), -1);  // Sunday: still one
  EXPECT_EQ(p.WorkingDaysLeft(absl::CivilDay(2026, 10, 12), due), -2);
}

TEST(PolicyTest, ReplyDueIsTheEndOfTheDueDayInChinaStandardTime) {
  Policy p = MustParse(kPolicy);
  v1::Notice n;
  n.mutable_verification_request();
  n.set_priority(v1::PRIORITY_SUBJECT);
  // 2026-09-30 17:00 UTC is 2026-10-01 01:00 CST: the count starts on October 1st.
  const absl::Time opened = absl::FromCivil(absl::CivilSecond(2026, 9, 30, 17, 0, 0), absl::UTCTimeZone());
  auto due = p.ReplyDue(n, opened);
  ASSERT_TRUE(due.has_value());
  EXPECT_EQ(absl::FormatTime("%Y-%m-%d %H:%M:%S", *due, ChinaStandardTime()), "2026-10-16 23:59:59");
  n.mutable_check_report();
  EXPECT_FALSE(p.ReplyDue(n, opened).has_value());
}

TEST(PolicyTest, PeriodsCloseOnTheCutOffDay) {
  Policy p = MustParse(kPolicy);
  ReportingPeriod oct = p.PeriodOf(absl::CivilDay(2026, 10, 20));
  EXPECT_EQ(oct.label, "2026-10");
  EXPECT_EQ(oct.first, absl::CivilDay(2026, 9, 21));
  EXPECT_EQ(oct.last, absl::CivilDay(2026, 10, 20));
  EXPECT_EQ(p.PeriodOf(absl::CivilDay(2026, 10, 21)).label, "2026-11");
  EXPECT_EQ(p.PeriodOf(absl::CivilDay(2026, 12, 25)).label, "2027-01");
  auto named = p.PeriodNamed("2026-10");
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->first, oct.first);
  EXPECT_THAT(std::string(p.PeriodNamed("2026-Q4").status().message()), HasSubstr("month like 2026-10"));

  Policy q = MustParse("version: q\ntargets: [{year: 2026}]\nperiod: {unit: UNIT_QUARTER}\n");
  ReportingPeriod q4 = q.PeriodOf(absl::CivilDay(2026, 11, 30));
  EXPECT_EQ(q4.label, "2026-Q4");
  EXPECT_EQ(q4.first, absl::CivilDay(2026, 10, 1));
  EXPECT_EQ(q4.last, absl::CivilDay(2026, 12, 31));
  EXPECT_EQ(q.PeriodNamed("2026-Q4")->first, q4.first);
}

TEST(PolicyTest, ScopeComesFromTheProvinceDigitsUnlessOverridden) {
  Policy p = MustParse(kPolicy);
  EXPECT_EQ(p.ScopeOf("110101", "110105"), v1::SCOPE_INTRA_PROVINCE);
  EXPECT_EQ(p.ScopeOf("110101", "310101"), v1::SCOPE_INTER_PROVINCE);
  EXPECT_EQ(p.ScopeOf("130102", "110101"), v1::SCOPE_INTRA_PROVINCE);  // override, either order
}

TEST(PolicyTest, TargetsFollowTheYear) {
  Policy p = MustParse(kPolicy);
  EXPECT_EQ(p.Target(2026, v1::SCOPE_INTER_PROVINCE), 80);
  EXPECT_EQ(p.Target(2027, v1::SCOPE_INTER_PROVINCE), 85);
  EXPECT_EQ(p.Target(2030, v1::SCOPE_INTRA_PROVINCE), 85);
  EXPECT_EQ(p.Target(2020, v1::SCOPE_INTER_PROVINCE), 80);  // before the first: the first
}

TEST(PolicyTest, TheDigestIgnoresTheOrderOfListsButNotTheirContent) {
  Policy a = MustParse(kPolicy);
  std::string reordered = kPolicy;
  reordered.replace(reordered.find("2026-10-01, 2026-10-02"), 22, "2026-10-02, 2026-10-01");
  Policy b = MustParse(reordered);
  EXPECT_EQ(a.digest(), b.digest());
  EXPECT_EQ(a.digest().size(), 32u);
  std::string changed = kPolicy;
  changed.replace(changed.find("days: 15}}"), 10, "days: 14}}");
  EXPECT_NE(MustParse(changed).digest(), a.digest());
}

TEST(PolicyTest, ErrorsNameTheFieldAndTheRule) {
  EXPECT_EQ(ErrorOf("targets: [{year: 2026}]\n"), "policy.yaml: version: 1..64 characters required");
  EXPECT_EQ(ErrorOf("version: v\ntargets: [{year: 2026}]\nrules: [{kind: birthday}]\n"),
            "policy.yaml: rules[0].kind: \"birthday\" is not a notice kind (residence_change, "
            "verification_request, ..., feedback, void)");
  EXPECT_EQ(ErrorOf("version: v\ntargets: [{year: 2026}]\nrules: [{kind: birth, reply: {days: 0}}]\n"),
            "policy.yaml: rules[0].reply.days: 0 is not in 1..366");
  EXPECT_THAT(ErrorOf("version: v\ntargets: [{year: 2026}]\nrules: [{kind: birth}, {kind: birth}]\n"),
              HasSubstr("rules[1]: a second rule for birth and PRIORITY_UNSPECIFIED"));
  EXPECT_EQ(ErrorOf("version: v\n"), "policy.yaml: targets: at least one target required");
  EXPECT_EQ(ErrorOf("version: v\ntargets: [{year: 2026, intra_province: 185}]\n"),
            "policy.yaml: targets[0].intra_province: 185 is not a percentage in 0..100");
  EXPECT_EQ(ErrorOf("version: v\ntargets: [{year: 2026}]\nperiod: {cutoff_day: 31}\n"),
            "policy.yaml: period.cutoff_day: 31 is not in 0..28 (0: the end of the month)");
  EXPECT_EQ(ErrorOf("version: v\ntargets: [{year: 2026}]\ncalendar: {weekend: [funday]}\n"),
            "policy.yaml: calendar.weekend[0]: \"funday\" is not a day of the week (monday..sunday)");
  EXPECT_EQ(ErrorOf("version: v\ntargets: [{year: 2026}]\ncalendar: {holidays: [2026-02-30]}\n"),
            "policy.yaml: calendar.holidays[0]: 2026-02-30 is not a valid date (1900..2200)");
  EXPECT_EQ(ErrorOf("version: v\ntargets: [{year: 2026}]\ncalendar: {workdays: [2026-10-08]}\n"),
            "policy.yaml: calendar.workdays[0]: 2026-10-08 is a weekday already (make-up working "
            "days fall on the weekend)");
  EXPECT_EQ(ErrorOf("version: v\ntargets: [{year: 2026}]\n"
                    "calendar: {holidays: [2026-10-10], workdays: [2026-10-10]}\n"),
            "policy.yaml: calendar.workdays[0]: 2026-10-10 is also listed as a holiday");
  EXPECT_THAT(ErrorOf("version: v\ntargets: [{year: 2026}]\n"
                      "scope_overrides: [{a: 110101, b: 110101, scope: SCOPE_INTRA_PROVINCE}]\n"),
              HasSubstr("scope_overrides[0].b: must differ from a"));
  EXPECT_THAT(ErrorOf("version: v\ntargets: [{year: 2026}]\nunknown_field: 1\n"),
              HasSubstr("unknown_field"));
}

TEST(PolicyTest, TheBuiltInPolicyFollowsTheDomainDefaults) {
  const Policy& p = Policy::Default();
  EXPECT_EQ(p.TermsFor("verification_request", v1::PRIORITY_SUBJECT).reply->days(), 15u);
  EXPECT_EQ(p.TermsFor("verification_request", v1::PRIORITY_NORMAL).reply->days(), 30u);
  auto bsr = p.TermsFor("birth_service_registration", v1::PRIORITY_NORMAL).reply;
  EXPECT_TRUE(bsr->working_days());
  EXPECT_EQ(bsr->days(), 15u);
  EXPECT_EQ(p.TermsFor("birth", v1::PRIORITY_NORMAL).reply->days(), 30u);
  EXPECT_EQ(p.TermsFor("check_report", v1::PRIORITY_NORMAL).receipt_days, 3u);
  EXPECT_EQ(p.proto().period().unit(), FederationPolicy::Period::UNIT_MONTH);
  EXPECT_EQ(ToHex(p.digest()).size(), 64u);
}

TEST(PolicyTest, NoticeKindIsTheBodyFieldName) {
  v1::Notice n;
  EXPECT_EQ(NoticeKind(n), "");
  n.mutable_birth_service_registration();
  EXPECT_EQ(NoticeKind(n), "birth_service_registration");
  n.mutable_void_();
  EXPECT_EQ(NoticeKind(n), "void");
}

}  // namespace
}  // namespace caseway::common
