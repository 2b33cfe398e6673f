#include "server/node.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config.h"
#include "common/identity.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/tls.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;

namespace {

absl::Status CheckNodeCertificate(const v1::NodeConfig& config) {
  ASSIGN_OR_RETURN(std::string pem, common::ReadFile(config.tls().cert_file()));
  auto uris = common::CertificateUris(pem);
  if (!uris.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.tls().cert_file(), ": ", uris.status().message()));
  }
  common::Identity want{common::Role::kNode, config.federation(), config.jurisdiction(), ""};
  if (std::find(uris->begin(), uris->end(), want.ToString()) == uris->end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("tls.cert_file: ", config.tls().cert_file(), " names [",
                     absl::StrJoin(*uris, ", "), "], not ", want.ToString()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Node>> Node::Start(const v1::NodeConfig& config) {
  RETURN_IF_ERROR(CheckNodeCertificate(config));
  common::TlsFiles files{config.tls().ca_file(), config.tls().cert_file(),
                         config.tls().key_file()};
  ASSIGN_OR_RETURN(auto server_creds, common::ServerCredentials(files));
  ASSIGN_OR_RETURN(auto channel_creds, common::ChannelCredentials(files));

  std::unique_ptr<Node> node(new Node(config));
  const std::filesystem::path db_dir = std::filesystem::path(config.storage().path()).parent_path();
  if (!db_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(db_dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(absl::StrCat(
          "storage.path: cannot create directory ", db_dir.string(), ": ", ec.message()));
    }
  }
  ASSIGN_OR_RETURN(node->store_, NoticeStore::Open(config.storage().path(),
                                                   config.storage().group_commit_max()));
  node->authz_ = std::make_unique<Authorizer>(config.federation(), config.jurisdiction());
  node->peer_exchange_ =
      std::make_unique<PeerExchangeService>(config, node->store_.get(), node->authz_.get());
  for (const auto& peer : config.peers()) {
    node->subscribers_.push_back(
        std::make_unique<Subscriber>(config, peer, channel_creds, node->store_.get()));
  }
  Node* raw = node.get();
  node->gateway_ = std::make_unique<GatewayService>(
      config, node->store_.get(), node->authz_.get(),
      [raw] {
        std::vector<v1::StatusResponse::Subscription> subs;
        for (auto& s : raw->subscribers_) subs.push_back(s->Status());
        return subs;
      },
      [raw](const std::string& dest) { return raw->peer_exchange_->OpenStreams(dest); });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen_address(), server_creds, &node->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  builder.SetMaxSendMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  builder.RegisterService(node->gateway_.get());
  builder.RegisterService(node->peer_exchange_.get());
  node->server_ = builder.BuildAndStart();
  if (node->server_ == nullptr || node->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("listen_address: cannot listen on ", config.listen_address()));
  }
  for (auto& s : node->subscribers_) s->Start();
  Log(LogLevel::kInfo, "node started",
      {{"jurisdiction", config.jurisdiction()},
       {"port", absl::StrCat(node->port_)},
       {"peers", absl::StrCat(config.peers_size())}});
  return node;
}

Node::~Node() { Shutdown(); }

void Node::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  Log(LogLevel::kInfo, "node shutting down", {{"jurisdiction", config_.jurisdiction()}});
  for (auto& s : subscribers_) s->Stop();
  if (gateway_) gateway_->Shutdown();
  if (peer_exchange_) peer_exchange_->Shutdown();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  subscribers_.clear();
  server_.reset();
  store_.reset();  // drains the commit queue: everything acknowledged is committed
  Log(LogLevel::kInfo, "node stopped", {{"jurisdiction", config_.jurisdiction()}});
}

}  // namespace caseway::server
