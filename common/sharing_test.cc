#include "common/sharing.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/policy.h"

namespace caseway::common {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr char kPolicy[] = R"(
version: "2026-12"
grants:
  - party: department/360102/public-security
    kinds:
      - {kind: certificate, fields: [subject.name, subject.id_number, certificate]}
      - {kind: birth, fields: [subject.id_number, birth.child_name, birth.birth_date]}
  - party: "440305"
    kinds:
      - {kind: residence_change, fields: [subject, residence_change.direction, residence_change.effective_date]}
)";

SharingPolicy MustParse(const std::string& yaml) {
  auto p = SharingPolicy::Parse(yaml, "sharing.yaml");
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

std::string ErrorOf(const std::string& yaml) {
  auto p = SharingPolicy::Parse(yaml, "sharing.yaml");
  return p.ok() ? "" : std::string(p.status().message());
}

v1::Notice Certificate() {
  v1::Notice n;
  n.set_notice_id("n-1");
  n.set_case_id("case-1");
  n.set_origin("360102");
  n.add_destinations("440305");
  n.mutable_occurred_at()->set_seconds(1790000000);
  n.mutable_subject()->set_name("Test Person");
  n.mutable_subject()->set_id_number("360102199001011234");
  n.mutable_subject()->set_residence_address("1 Test Road");
  n.mutable_subject()->set_marital_status(v1::MARITAL_STATUS_FIRST_MARRIAGE);
  n.mutable_certificate()->set_number("C-77");
  n.mutable_certificate()->set_action(v1::Certificate::ACTION_ISSUED);
  return n;
}

TEST(SharingPolicyTest, ADepartmentGetsTheGrantedFieldsOfTheGrantedKindsOnly) {
  SharingPolicy p = MustParse(kPolicy);
  const std::string dept = "department/360102/public-security";
  auto copy = p.Apply(dept, Certificate());
  ASSERT_TRUE(copy.has_value());
  EXPECT_EQ(copy->notice_id(), "n-1");
  EXPECT_EQ(copy->case_id(), "case-1");
  EXPECT_THAT(copy->destinations(), ElementsAre("440305"));
  EXPECT_EQ(copy->subject().name(), "Test Person");
  EXPECT_EQ(copy->subject().id_number(), "360102199001011234");
  EXPECT_EQ(copy->subject().residence_address(), "");
  EXPECT_EQ(copy->subject().marital_status(), v1::MARITAL_STATUS_UNSPECIFIED);
  EXPECT_EQ(copy->certificate().number(), "C-77");  // the whole body is granted
  EXPECT_THAT(p.Beyond(dept, *copy), IsEmpty());
  EXPECT_THAT(p.Beyond(dept, Certificate()),
              UnorderedElementsAre("subject.residence_address", "subject.marital_status"));

  // A kind not granted does not go to a department at all, nor to one the policy does not name.
  v1::Notice pregnancy = Certificate();
  pregnancy.mutable_pregnancy()->set_status(v1::Pregnancy::STATUS_PREGNANT);
  EXPECT_FALSE(p.Apply(dept, pregnancy).has_value());
  EXPECT_THAT(p.Beyond(dept, pregnancy), ElementsAre("pregnancy"));
  EXPECT_FALSE(p.Apply("department/360102/civil-affairs", Certificate()).has_value());
  EXPECT_THAT(p.GrantedKinds(dept), ElementsAre("birth", "certificate"));
}

TEST(SharingPolicyTest, APeerGetsEveryNoticeButOnlyTheGrantedFields) {
  SharingPolicy p = MustParse(kPolicy);
  v1::Notice move = Certificate();
  move.mutable_residence_change()->set_direction(v1::ResidenceChange::DIRECTION_ARRIVAL);
  move.mutable_residence_change()->set_residence_address("2 Other Road");
  move.mutable_residence_change()->set_childbearing_status("pregnant");
  auto copy = p.Apply("440305", move);
  ASSERT_TRUE(copy.has_value());
  EXPECT_EQ(copy->subject().residence_address(), "1 Test Road");  // subject granted whole
  EXPECT_EQ(copy->residence_change().direction(), v1::ResidenceChange::DIRECTION_ARRIVAL);
  EXPECT_EQ(copy->residence_change().residence_address(), "");
  EXPECT_EQ(copy->residence_change().childbearing_status(), "");
  EXPECT_THAT(p.Beyond("440305", move),
              UnorderedElementsAre("residence_change.residence_address",
                                   "residence_change.childbearing_status"));

  // A kind without a grant: its envelope and kind only, still a notice of that kind.
  auto cert = p.Apply("440305", Certificate());
  ASSERT_TRUE(cert.has_value());
  EXPECT_FALSE(cert->has_subject());
  EXPECT_TRUE(cert->has_certificate());
  EXPECT_EQ(NoticeKind(*cert), "certificate");
  EXPECT_EQ(cert->certificate().number(), "");
  EXPECT_EQ(cert->case_id(), "case-1");

  // A peer the policy does not name gets the notice whole.
  auto whole = p.Apply("110101", move);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->SerializeAsString(), move.SerializeAsString());
  EXPECT_THAT(p.Beyond("110101", move), IsEmpty());
}

TEST(SharingPolicyTest, TheDigestChangesWithTheContentAndBadPoliciesNameTheField) {
  SharingPolicy a = MustParse(kPolicy);
  SharingPolicy b = MustParse(std::string(kPolicy) + "  - {party: \"110101\"}\n");
  EXPECT_NE(a.digest(), b.digest());
  EXPECT_EQ(a.digest().size(), 32u);
  auto again = SharingPolicy::FromBytes(a.bytes());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->digest(), a.digest());

  EXPECT_THAT(ErrorOf("grants: []\n"), HasSubstr("version: required"));
  EXPECT_THAT(ErrorOf("version: x\ngrants: [{party: department/36/x}]\n"),
              HasSubstr("grants[0].party: must be department/<region code>/<name>"));
  EXPECT_THAT(ErrorOf("version: x\ngrants: [{party: police}]\n"),
              HasSubstr("grants[0].party: must be a peer's region code"));
  EXPECT_THAT(ErrorOf("version: x\ngrants: [{party: \"440305\", kinds: [{kind: passport}]}]\n"),
              HasSubstr("grants[0].kinds[0].kind: 'passport' is not a notice kind"));
  EXPECT_THAT(ErrorOf("version: x\ngrants: [{party: \"440305\", kinds: [{kind: birth, fields: "
                      "[birth.colour]}]}]\n"),
              HasSubstr("grants[0].kinds[0].fields[0]: 'birth.colour': caseway.v1.Birth has no "
                        "field colour"));
  EXPECT_THAT(ErrorOf("version: x\ngrants: [{party: \"440305\", kinds: [{kind: birth, fields: "
                      "[certificate.number]}]}]\n"),
              HasSubstr("grants[0].kinds[0].fields[0]: 'certificate.number': must be subject"));
  EXPECT_THAT(ErrorOf("version: x\ngrants: [{party: \"440305\"}, {party: \"440305\"}]\n"),
              HasSubstr("grants[1].party: 440305 has another grant"));
}

}  // namespace
}  // namespace caseway::common
