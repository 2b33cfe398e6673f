#include "common/identity.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace caseway::common {
namespace {

using ::caseway::testing::StatusIs;
using ::testing::HasSubstr;

TEST(IdentityTest, ParsesEveryRole) {
  auto node = ParseSpiffeId("spiffe://fed.test/node/360102");
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->role, Role::kNode);
  EXPECT_EQ(node->federation, "fed.test");
  EXPECT_EQ(node->jurisdiction, "360102");

  auto client = ParseSpiffeId("spiffe://fed.test/client/440305/office-1");
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(client->role, Role::kClient);
  EXPECT_EQ(client->jurisdiction, "440305");
  EXPECT_EQ(client->name, "office-1");
  EXPECT_EQ(client->ToString(), "spiffe://fed.test/client/440305/office-1");

  auto auditor = ParseSpiffeId("spiffe://fed.test/auditor/alice");
  ASSERT_TRUE(auditor.ok()) << auditor.status();
  EXPECT_EQ(auditor->role, Role::kAuditor);
  EXPECT_EQ(auditor->name, "alice");

  auto department = ParseSpiffeId("spiffe://fed.test/department/360102/public-security");
  ASSERT_TRUE(department.ok()) << department.status();
  EXPECT_EQ(department->role, Role::kDepartment);
  EXPECT_EQ(department->jurisdiction, "360102");
  EXPECT_EQ(department->name, "public-security");
  EXPECT_EQ(department->ToString(), "spiffe://fed.test/department/360102/public-security");
  EXPECT_EQ(department->Party(), "department/360102/public-security");
  EXPECT_EQ(node->Party(), "360102");
}

TEST(IdentityTest, RefusesMalformedIds) {
  for (const char* bad : {"https://fed.test/node/360102", "spiffe:///node/360102",
                          "spiffe://fed.test/node/36010", "spiffe://fed.test/node/360102/x",
                          "spiffe://fed.test/client/360102", "spiffe://fed.test/auditor/",
                          "spiffe://fed.test/admin/bob", "spiffe://fed.test/client/360102/a b",
                          "spiffe://fed.test/department/360102", "spiffe://fed.test/department/36/x",
                          "spiffe://fed.test/department/360102/a/b"}) {
    EXPECT_THAT(ParseSpiffeId(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spiffe id")))
        << bad;
  }
}

}  // namespace
}  // namespace caseway::common
