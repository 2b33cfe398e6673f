#include "server/authz.h"

#include <gtest/gtest.h>

namespace caseway::server {
namespace {

using common::Identity;
using common::Role;

// The table of authz.h, row by row, including every refusal.
TEST(AuthorizerTest, RoleByRpcTable) {
  Authorizer authz("fed.test", "360102");
  const Identity own_client{Role::kClient, "fed.test", "360102", "office"};
  const Identity other_client{Role::kClient, "fed.test", "440305", "office"};
  const Identity node{Role::kNode, "fed.test", "440305", ""};
  const Identity auditor{Role::kAuditor, "fed.test", "", "alice"};
  const Identity department{Role::kDepartment, "fed.test", "360102", "public-security"};
  struct Row {
    Rpc rpc;
    bool own_client, other_client, node, auditor, department;
  };
  const Row rows[] = {
      {Rpc::kPublish, true, false, false, false, false},
      {Rpc::kPublishBatch, true, false, false, false, false},
      {Rpc::kInbox, true, false, false, false, false},
      {Rpc::kStatus, true, false, false, true, false},
      {Rpc::kTodo, true, false, false, false, false},
      {Rpc::kQueryPeer, true, false, false, false, false},
      {Rpc::kCase, true, false, false, false, false},
      {Rpc::kAccessLog, true, false, false, false, false},
      {Rpc::kSubscribe, false, false, true, false, false},
      {Rpc::kQuery, false, false, true, false, true},
      {Rpc::kPeerView, false, false, true, false, false},
      {Rpc::kLogCheckpoint, false, false, true, true, false},
      {Rpc::kLogAudit, false, false, false, true, false},
      {Rpc::kLogCosign, false, false, true, false, false},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(authz.Allowed(own_client, r.rpc), r.own_client) << RpcName(r.rpc);
    EXPECT_EQ(authz.Allowed(other_client, r.rpc), r.other_client) << RpcName(r.rpc);
    EXPECT_EQ(authz.Allowed(node, r.rpc), r.node) << RpcName(r.rpc);
    EXPECT_EQ(authz.Allowed(auditor, r.rpc), r.auditor) << RpcName(r.rpc);
    EXPECT_EQ(authz.Allowed(department, r.rpc), r.department) << RpcName(r.rpc);
  }
}

}  // namespace
}  // namespace caseway::server
