// Identity and authorization against a real node: mutual TLS with generated certificates,
// SPIFFE identities, the role x RPC table, and refusals that store nothing.
#include <grpcpp/grpcpp.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/grpc_status.h"
#include "common/refusal.h"
#include "common/tls.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    a_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), "360102");
    b_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), "440305");
    c_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), "360111");
    a_->AddPeer(*b_);
    a_->AddPeer(*c_);
    ASSERT_OK(a_->Start());  // only A runs; the test plays the other parties
  }

  // Channel to A presenting `prefix`.crt/.key (empty prefix: no client certificate).
  std::shared_ptr<grpc::Channel> ChannelAs(const std::string& prefix, const std::string& ca = "") {
    common::TlsFiles files{ca.empty() ? pki_->ca() : ca, prefix.empty() ? "" : prefix + ".crt",
                           prefix.empty() ? "" : prefix + ".key"};
    auto creds = common::ChannelCredentials(files);
    EXPECT_OK(creds);
    return grpc::CreateChannel(a_->address(), *creds);
  }

  absl::Status PublishAs(const std::string& prefix) {
    auto stub = v1::Gateway::NewStub(ChannelAs(prefix));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::PublishRequest req;
    *req.mutable_notice() = SampleNotice("sec-1", {"440305"});
    v1::PublishResult resp;
    return common::FromGrpcStatus(stub->Publish(&ctx, req, &resp));
  }

  absl::Status StatusAs(const std::string& prefix) {
    auto stub = v1::Gateway::NewStub(ChannelAs(prefix));
    grpc::ClientContext ctx;
    v1::StatusResponse resp;
    return common::FromGrpcStatus(stub->Status(&ctx, v1::StatusRequest(), &resp));
  }

  // SubscribeAs opens A's channel to `destination` as `prefix` and returns how the stream ends
  // (or OK once the first message arrives).
  absl::Status SubscribeAs(const std::string& prefix, const std::string& destination,
                           uint64_t cursor) {
    auto stub = v1::PeerExchange::NewStub(ChannelAs(prefix));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->Subscribe(&ctx);
    v1::SubscribeRequest open;
    open.mutable_open()->set_destination(destination);
    open.mutable_open()->set_cursor(cursor);
    stream->Write(open);
    v1::SubscribeResponse resp;
    if (stream->Read(&resp)) {
      ctx.TryCancel();
      stream->Finish();
      return absl::OkStatus();
    }
    return common::FromGrpcStatus(stream->Finish());
  }

  int64_t Stored() { return a_->Published(); }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::unique_ptr<NodeProcess> a_, b_, c_;
};

TEST_F(SecurityTest, ClientOfTheNodesJurisdictionMayPublish) {
  EXPECT_OK(PublishAs(pki_->Client("360102", "office")));
  EXPECT_EQ(Stored(), 1);
}

TEST_F(SecurityTest, ClientOfAnotherJurisdictionIsPermissionDenied) {
  auto refused = PublishAs(pki_->Client("440305", "office"));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kPermissionDenied,
                                HasSubstr("spiffe://fed.test/client/440305/office may not call "
                                          "Gateway.Publish")));
  EXPECT_EQ(common::ReasonOf(refused), "NOT_PERMITTED") << "typed details (errors.md)";
  EXPECT_EQ(Stored(), 0);
}

TEST_F(SecurityTest, CertificateFromAForeignCaIsRefusedAtTheHandshake) {
  Pki foreign(dir_.path() + "/foreign", "fed.test");  // same federation name, other CA
  std::string prefix = foreign.Client("360102", "office");
  EXPECT_THAT(PublishAs(prefix), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_EQ(Stored(), 0);
}

TEST_F(SecurityTest, ConnectionWithoutClientCertificateIsRefused) {
  EXPECT_THAT(PublishAs(""), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_EQ(Stored(), 0);
}

TEST_F(SecurityTest, NodeMaySubscribeOnlyToItsOwnChannel) {
  EXPECT_OK(SubscribeAs(pki_->Node("440305"), "440305", 0));
  EXPECT_THAT(SubscribeAs(pki_->Node("440305"), "360111", 0),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("open.destination: spiffe://fed.test/node/440305 may subscribe "
                                 "only to channel 440305")));
}

TEST_F(SecurityTest, CursorBeyondTheHeadIsOutOfRange) {
  EXPECT_THAT(SubscribeAs(pki_->Node("440305"), "440305", 7),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr("open.cursor: 7 is beyond the head 0 of channel 440305")));
}

// The role x RPC table of server/authz.h, exercised row by row through the real node.
TEST_F(SecurityTest, RoleByRpcTableIsEnforced) {
  const std::string client = pki_->Client("360102", "office");
  const std::string other_client = pki_->Client("440305", "office");
  const std::string node = pki_->Node("440305");
  const std::string auditor = pki_->Auditor("alice");
  // Publish: own client only.
  EXPECT_THAT(PublishAs(node), StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(PublishAs(auditor), StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  // Status: own client and auditor.
  EXPECT_OK(StatusAs(client));
  EXPECT_OK(StatusAs(auditor));
  EXPECT_THAT(StatusAs(node), StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(StatusAs(other_client), StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  // Subscribe: nodes only.
  EXPECT_THAT(SubscribeAs(client, "360102", 0),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(SubscribeAs(auditor, "440305", 0),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  // Inbox: own client only.
  for (const std::string& who : {node, auditor, other_client}) {
    auto stub = v1::Gateway::NewStub(ChannelAs(who));
    grpc::ClientContext ctx;
    auto stream = stub->Inbox(&ctx);
    v1::InboxRequest start;
    start.mutable_start();
    stream->Write(start);
    stream->WritesDone();
    v1::InboxResponse resp;
    EXPECT_FALSE(stream->Read(&resp));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED) << who;
  }
  EXPECT_EQ(Stored(), 0);
}

// Health: grpc.health.v1.Health/Check with an empty request answers SERVING (field 1 = 1).
TEST_F(SecurityTest, HealthServiceAnswersAnyFederationCertificate) {
  grpc::GenericStub stub(ChannelAs(pki_->Auditor("alice")));
  grpc::ClientContext ctx;
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  grpc::Status status = done.get_future().get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2)) << "HealthCheckResponse{status: SERVING}";
}

// Reflection: ServerReflectionInfo with list_services (field 7 = "") names our services.
TEST_F(SecurityTest, ServerReflectionListsTheCasewayServices) {
  grpc::GenericStub stub(ChannelAs(pki_->Client("360102", "office")));
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto call = stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                               &cq);
  void* tag;
  bool ok;
  auto step = [&](intptr_t want) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step(1));
  grpc::Slice list_services(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request(&list_services, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  ASSERT_TRUE(step(2));
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(3));
  ASSERT_TRUE(step(3));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_THAT(bytes, HasSubstr("caseway.v1.Gateway"));
  EXPECT_THAT(bytes, HasSubstr("caseway.v1.PeerExchange"));
  EXPECT_THAT(bytes, HasSubstr("grpc.health.v1.Health"));
  call->WritesDone(reinterpret_cast<void*>(4));
  step(4);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(SecurityTest, NodeRefusesToStartWithACertificateOfAnotherJurisdiction) {
  // A configuration for 360111 that points at 440305's certificate.
  std::string b = pki_->Node("440305");
  std::string path = dir_.path() + "/wrong.yaml";
  std::ofstream(path) << "federation: fed.test\njurisdiction: \"360111\"\n"
                      << "listen_address: 127.0.0.1:0\n"
                      << "tls:\n  ca_file: " << pki_->ca() << "\n  cert_file: " << b
                      << ".crt\n  key_file: " << b << ".key\n"
                      << "storage:\n  path: " << dir_.path() << "/wrong.db\n"
                      << "exchange_log:\n  disabled: true\n";
  RunResult r = RunCommand({BinDir() + "/caseway-node", "--config", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("tls.cert_file: "));
  EXPECT_THAT(r.err, HasSubstr("names [spiffe://fed.test/node/440305], not "
                               "spiffe://fed.test/node/360111"));
}

TEST_F(SecurityTest, SecondNodeOnATakenPortFailsInsteadOfSharingIt) {
  NodeProcess second(pki_.get(), dir_.path() + "/second", "360111");
  std::filesystem::create_directories(dir_.path() + "/second");
  second.set_port(a_->port());
  absl::Status s = second.Start();
  EXPECT_FALSE(s.ok()) << "two nodes would share 127.0.0.1:" << a_->port();
  EXPECT_THAT(second.log(), HasSubstr("cannot listen on 127.0.0.1:"));
  // A is still the only one answering there.
  EXPECT_OK(StatusAs(pki_->Client("360102", "office")));
}

TEST_F(SecurityTest, NodeRefusesABadConfigurationNamingFileFieldAndRule) {
  std::string path = dir_.path() + "/bad.yaml";
  std::ofstream(path) << "federation: fed.test\njurisdiction: \"360111\"\n"
                      << "listen_address: 127.0.0.1:0\n"
                      << "tls:\n  ca_file: a\n  cert_file: b\n  key_file: c\n"
                      << "storage:\n  path: x.db\nexchange:\n  window_batches: 0\n"
                      << "  batch_max_entries: 20000\n";
  RunResult r = RunCommand({BinDir() + "/caseway-node", "--config", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(path + ": exchange.batch_max_entries: must be in 1..10000"));
  RunResult help = RunCommand({BinDir() + "/caseway-node", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--config node.yaml"));
}

}  // namespace
}  // namespace caseway::testing
