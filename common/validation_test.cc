#include "common/validation.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/testing/status_matchers.h"

namespace caseway::common {
namespace {

using ::caseway::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

NoticeRules Rules() {
  NoticeRules r;
  r.self_jurisdiction = "360102";
  r.peers = {"360111", "440305"};
  r.now = absl::FromCivil(absl::CivilSecond(2026, 11, 29, 12, 0, 0), absl::UTCTimeZone());
  return r;
}

// Samples reads 360102's sample notices (deploy/samples/notices-360102.jsonl) and its reply
// (replies-360102.jsonl): one valid notice of every kind.
std::vector<v1::Notice> Samples() {
  const char* src = getenv("CASEWAY_SOURCE_DIR");
  std::vector<v1::Notice> out;
  for (const char* file : {"notices-360102.jsonl", "replies-360102.jsonl"}) {
    std::ifstream in(std::string(src ? src : CASEWAY_DEFAULT_SOURCE_DIR) + "/deploy/samples/" + file);
    EXPECT_TRUE(in.good()) << file;
    std::string line;
    while (std::getline(in, line)) {
      v1::Notice n;
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &n).ok()) << line;
      out.push_back(n);
    }
  }
  return out;
}

v1::Notice Valid() { return Samples().at(0); }

TEST(ValidationTest, EverySampleKindIsValidWithoutWarnings) {
  std::set<int> kinds;
  for (const v1::Notice& n : Samples()) {
    auto warnings = ValidateNotice(n, Rules());
    ASSERT_TRUE(warnings.ok()) << n.notice_id() << ": " << warnings.status();
    EXPECT_THAT(*warnings, IsEmpty()) << n.notice_id();
    kinds.insert(n.body_case());
  }
  EXPECT_EQ(kinds.size(), 12u) << "the samples cover every notice kind";
}

TEST(ValidationTest, ErrorsNameTheFieldAndTheRule) {
  struct Case {
    const char* name;
    std::function<void(v1::Notice&)> mutate;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"no id", [](v1::Notice& n) { n.clear_notice_id(); }, "p.notice_id: required"},
      {"bad id", [](v1::Notice& n) { n.set_notice_id("a b"); }, "p.notice_id: only letters"},
      {"no case", [](v1::Notice& n) { n.clear_case_id(); }, "p.case_id: required"},
      {"no subject", [](v1::Notice& n) { n.clear_subject(); }, "p.subject: required"},
      {"no name", [](v1::Notice& n) { n.mutable_subject()->clear_name(); }, "p.subject.name: required"},
      {"short id", [](v1::Notice& n) { n.mutable_subject()->set_id_number("123"); },
       "p.subject.id_number: 18 characters expected"},
      {"letter id", [](v1::Notice& n) { n.mutable_subject()->set_id_number("36010219930612002Y"); },
       "p.subject.id_number: check character must be a digit or X"},
      {"sex unspecified", [](v1::Notice& n) { n.mutable_subject()->set_sex(v1::SEX_UNSPECIFIED); },
       "p.subject.sex: required (must not be *_UNSPECIFIED)"},
      {"unknown enum", [](v1::Notice& n) { n.mutable_subject()->set_sex(static_cast<v1::Sex>(9)); },
       "p.subject.sex: unknown enum value 9"},
      {"bad date", [](v1::Notice& n) { n.mutable_subject()->mutable_birth_date()->set_day(31); n.mutable_subject()->mutable_birth_date()->set_month(2); },
       "p.subject.birth_date: not a valid calendar date"},
      {"future birth", [](v1::Notice& n) { n.mutable_subject()->mutable_birth_date()->set_year(2027); },
       "p.subject.birth_date: must not be in the future"},
      {"bad region", [](v1::Notice& n) { n.mutable_subject()->set_registered_region("99010"); },
       "p.subject.registered_region: region code of 6 or 12 digits expected"},
      {"no province", [](v1::Notice& n) { n.mutable_subject()->set_registered_region("990102"); },
       "p.subject.registered_region: region code: 99 is not a province-level code"},
      {"foreign origin", [](v1::Notice& n) { n.set_origin("440305"); }, "p.origin: must be empty"},
      {"no destination", [](v1::Notice& n) { n.clear_destinations(); },
       "p.destinations: at least one destination required"},
      {"unknown destination", [](v1::Notice& n) { n.set_destinations(0, "110101"); },
       "p.destinations[0]: 110101 is not a peer of this node"},
      {"self destination", [](v1::Notice& n) { n.set_destinations(0, "360102"); },
       "p.destinations[0]: must not be the origin itself"},
      {"dup destination", [](v1::Notice& n) { n.set_destinations(1, "440305"); },
       "p.destinations[1]: duplicate destination"},
      {"no time", [](v1::Notice& n) { n.clear_occurred_at(); }, "p.occurred_at: required"},
      {"future time", [](v1::Notice& n) { n.mutable_occurred_at()->set_seconds(1'900'000'000); },
       "p.occurred_at: must not be more than 5 minutes in the future"},
      {"priority", [](v1::Notice& n) { n.set_priority(v1::PRIORITY_UNSPECIFIED); },
       "p.priority: required (must not be *_UNSPECIFIED)"},
      {"revision", [](v1::Notice& n) { n.set_revision(2); },
       "p.in_reply_to: required when revision > 0"},
      {"reply due", [](v1::Notice& n) { n.mutable_reply_due()->set_seconds(1); },
       "p.reply_due: must not be before occurred_at"},
      {"no body", [](v1::Notice& n) { n.clear_body(); }, "p.body: exactly one kind is required"},
      {"direction", [](v1::Notice& n) { n.mutable_residence_change()->clear_direction(); },
       "p.residence_change.direction: required"},
      {"no effective date", [](v1::Notice& n) { n.mutable_residence_change()->clear_effective_date(); },
       "p.residence_change.effective_date: required"},
      {"long address", [](v1::Notice& n) { n.mutable_residence_change()->set_residence_address(std::string(257, 'x')); },
       "p.residence_change.residence_address: at most 256 characters"},
  };
  for (const Case& c : cases) {
    v1::Notice n = Valid();
    c.mutate(n);
    EXPECT_THAT(ValidateNotice(n, Rules(), "p."),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.name;
  }
}

TEST(ValidationTest, KindSpecificRules) {
  auto samples = Samples();
  auto find = [&](v1::Notice::BodyCase kind) {
    for (const auto& n : samples) if (n.body_case() == kind) return n;
    ADD_FAILURE() << "no sample of kind " << kind;
    return v1::Notice();
  };
  auto expect_error = [&](v1::Notice n, const char* message) {
    EXPECT_THAT(ValidateNotice(n, Rules()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)));
  };
  v1::Notice n = find(v1::Notice::kVerificationRequest);
  n.mutable_verification_request()->clear_items();
  expect_error(n, "verification_request.items: at least one item required");
  n = find(v1::Notice::kPregnancy);
  n.mutable_pregnancy()->set_weeks(0);
  expect_error(n, "pregnancy.weeks: required unless last_menstrual_period is set");
  n.mutable_pregnancy()->set_weeks(46);
  expect_error(n, "pregnancy.weeks: must be in 1..45");
  n = find(v1::Notice::kBirth);
  n.mutable_birth()->set_birth_order(0);
  expect_error(n, "birth.birth_order: must be in 1..20");
  n = find(v1::Notice::kCertificate);
  n.mutable_certificate()->mutable_valid_until()->set_year(2020);
  expect_error(n, "certificate.valid_until: must not be before valid_from");
  n = find(v1::Notice::kFee);
  n.mutable_fee()->set_amount_fen(0);
  expect_error(n, "fee.amount_fen: required (> 0) for a decision");
  n = find(v1::Notice::kFee);
  n.mutable_fee()->set_amount_fen(-5);
  expect_error(n, "fee.amount_fen: must be in 0..1000000000000");
  n = find(v1::Notice::kFeedback);
  n.clear_in_reply_to();
  expect_error(n, "in_reply_to: required for feedback");
  n = find(v1::Notice::kFeedback);
  n.mutable_feedback()->set_outcome(v1::Feedback::OUTCOME_REJECTED);
  expect_error(n, "feedback.reason: required");
  n = find(v1::Notice::kVoid);
  n.mutable_void_()->clear_reason();
  expect_error(n, "void.reason: required");
  n = find(v1::Notice::kCheckReport);
  n.mutable_check_report()->clear_service_unit();
  expect_error(n, "check_report.service_unit: required");
  n = find(v1::Notice::kStatusChange);
  n.mutable_status_change()->clear_new_state();
  expect_error(n, "status_change.new_state: required");
}

TEST(ValidationTest, WrongIdCheckCharacterIsAWarningNotAnError) {
  v1::Notice n = Valid();
  n.mutable_subject()->set_id_number("360102199306120024");
  auto warnings = ValidateNotice(n, Rules());
  ASSERT_TRUE(warnings.ok()) << warnings.status();
  ASSERT_EQ(warnings->size(), 1u);
  EXPECT_THAT((*warnings)[0], HasSubstr("subject.id_number: check character 4 does not match "
                                        "(expected 3)"));
  n.mutable_subject()->set_id_number("000000000000000000");  // common placeholder
  warnings = ValidateNotice(n, Rules());
  ASSERT_TRUE(warnings.ok());
  EXPECT_THAT(*warnings, IsEmpty());
}

TEST(ValidationTest, IdNumberCheckCharacterFollowsIso7064) {
  EXPECT_EQ(IdNumberCheckCharacter("11010519491231002X"), 'X');  // the GB 11643 example
  EXPECT_EQ(IdNumberCheckCharacter("360102199306120023"), '3');
}

TEST(ValidationTest, RegionCodes) {
  EXPECT_TRUE(ValidateRegionCode("360102").ok());
  EXPECT_TRUE(ValidateRegionCode("440305001002").ok());
  EXPECT_FALSE(ValidateRegionCode("36010").ok());
  EXPECT_FALSE(ValidateRegionCode("3601020").ok());
  EXPECT_FALSE(ValidateRegionCode("36010a").ok());
  EXPECT_FALSE(ValidateRegionCode("000000").ok());
  EXPECT_FALSE(ValidateRegionCode("").ok());
}

}  // namespace
}  // namespace caseway::common
