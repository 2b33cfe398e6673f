#include "server/node.h"

#include <grpcpp/resource_quota.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <google/protobuf/util/time_util.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/directory.h"
#include "common/identity.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/tls.h"
#include "server/error_policy.h"
#include "server/restore.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;

namespace {

// StopLeaseLost ends a node of an active/standby pair that no longer holds the writer lease
// (taken, run out, or fenced): everything it acknowledged is committed, and it restarts as the
// standby (exit status kLeaseLostExitCode).
[[noreturn]] void StopLeaseLost(const std::string& reason) {
  Log(LogLevel::kError, "writer lease lost: this node stops (it restarts as the standby)",
      {{"reason", reason}});
  std::_Exit(kLeaseLostExitCode);
}

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
  ASSIGN_OR_RETURN(std::string key_pem, common::ReadFile(config.tls().key_file()));
  if (absl::Status s = common::KeyMatchesCertificate(pem, key_pem); !s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("tls.key_file: ", config.tls().key_file(), ": ", s.message()));
  }
  // TLS checks certificates against the system clock: a clock set wrong makes every handshake
  // fail, and peers and clients see only a failed handshake. Say so here, where the cause is.
  for (const std::string* file : {&config.tls().cert_file(), &config.tls().ca_file()}) {
    auto pem_file = common::ReadFile(*file);
    if (!pem_file.ok()) continue;
    auto window = common::CertificateValidity(*pem_file);
    if (!window.ok()) continue;
    if (std::string problem = common::ClockProblem(*window, common::Now()); !problem.empty()) {
      Log(LogLevel::kError, "TLS will fail because of time",
          {{"certificate", *file}, {"problem", problem}});
    }
  }
  return absl::OkStatus();
}

// LoadKeyAndDirectory reads the signing key and the federation directory and checks that the
// directory lists that key for this node, valid now.
absl::StatusOr<std::pair<std::shared_ptr<const common::SigningKey>,
                         std::shared_ptr<const common::Directory>>>
LoadKeyAndDirectory(const v1::NodeConfig& config) {
  const auto& xl = config.exchange_log();
  ASSIGN_OR_RETURN(std::string pem, common::ReadFile(xl.signing_key_file()));
  auto key = common::SigningKey::LoadPem(pem);
  if (!key.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "exchange_log.signing_key_file: ", xl.signing_key_file(), ": ", key.status().message()));
  }
  auto dir = common::Directory::Load(xl.directory_file());
  if (!dir.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("exchange_log.directory_file: ", dir.status().message()));
  }
  if (dir->federation() != config.federation()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "exchange_log.directory_file: federation ", dir->federation(), " is not ",
        config.federation()));
  }
  auto keys = dir->Keys(config.jurisdiction());
  const common::Directory::ListedKey* listed = nullptr;
  if (keys.ok()) {
    for (const auto& k : *keys) {
      if (k.public_key == (*key)->PublicKey()) listed = &k;
    }
  }
  if (listed == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "exchange_log.signing_key_file: its public key is not one the federation directory "
        "lists for ", config.jurisdiction()));
  }
  if (!listed->ValidAt(common::Now())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "exchange_log.signing_key_file: the federation directory lists its public key for ",
        config.jurisdiction(), " as valid from ",
        absl::FormatTime(absl::RFC3339_sec, listed->from, absl::UTCTimeZone()), " until ",
        absl::FormatTime(absl::RFC3339_sec, listed->until, absl::UTCTimeZone()),
        ", not now: peers would refuse what it signs"));
  }
  return std::make_pair(std::shared_ptr<const common::SigningKey>(std::move(*key)),
                        std::make_shared<const common::Directory>(std::move(*dir)));
}

absl::StatusOr<Signatures> LoadSignatures(const v1::NodeConfig& config) {
  if (config.exchange_log().disabled()) return Signatures();
  ASSIGN_OR_RETURN(auto loaded, LoadKeyAndDirectory(config));
  return Signatures(std::move(loaded.first), std::move(loaded.second));
}

// FileStamp identifies a file's version (a replaced or rewritten file has another).
std::string FileStamp(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat(st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
}

// ReloadSignatures takes up a changed signing key file or federation directory (a rotation,
// docs/operator.md): a new key is recorded in the log (KIND_SIGNING_KEY) before it signs
// anything. A file that does not load, or a key the directory does not list as valid now, is
// logged and the node goes on with what it has.
void ReloadSignatures(const v1::NodeConfig& config, NoticeStore* store, Signatures signatures,
                      std::string* stamps, std::string* warned) {
  const auto& xl = config.exchange_log();
  const std::string dir_stamp = FileStamp(xl.directory_file());
  const std::string now = FileStamp(xl.signing_key_file()) + "|" + dir_stamp;
  if (now == *stamps) return;
  auto loaded = LoadKeyAndDirectory(config);
  if (!loaded.ok()) {
    // Tried again every interval (a key valid from a minute on is taken up then), warned once.
    if (*warned != now) {
      *warned = now;
      Log(LogLevel::kWarn, "signing key or federation directory changed but not taken up (yet)",
          {{"status", loaded.status().ToString()}});
      // A directory that loads is taken up on its own even so: the ends it gives other nodes'
      // keys (a compromise) apply at once, whatever becomes of this node's key.
      auto dir = common::Directory::Load(xl.directory_file());
      if (dir.ok() && dir->federation() == config.federation() &&
          dir_stamp != stamps->substr(stamps->find('|') + 1)) {
        signatures.Update(signatures.key(), std::make_shared<const common::Directory>(std::move(*dir)));
        *stamps = stamps->substr(0, stamps->find('|') + 1) + dir_stamp;
        Log(LogLevel::kInfo, "federation directory reloaded", {{"file", xl.directory_file()}});
      }
    }
    return;
  }
  const std::string old_key = signatures.key()->PublicKey();
  const std::string new_key = loaded->first->PublicKey();
  if (new_key != old_key) {
    if (absl::Status s = store->RecordSigningKey(new_key); !s.ok()) {
      Log(LogLevel::kWarn, "signing key not rotated: its log entry was not written (retried)",
          {{"status", s.ToString()}});
      return;
    }
  }
  *stamps = now;
  signatures.Update(std::move(loaded->first), std::move(loaded->second));
  if (new_key != old_key) {
    Log(LogLevel::kInfo, "signing key rotated: signing with the new key from now on",
        {{"old_key", common::ToHex(old_key).substr(0, 16)},
         {"new_key", common::ToHex(new_key).substr(0, 16)}});
  } else {
    Log(LogLevel::kInfo, "federation directory reloaded", {{"file", xl.directory_file()}});
  }
}

// PurgeExpired removes the personal data settled before now - `retention` (NoticeStore::Purge),
// a thousand rows of each kind per transaction so that publishing never waits long behind it.
void PurgeExpired(NoticeStore* store, absl::Duration retention) {
  const absl::Time before = common::Now() - retention;
  NoticeStore::PurgeCounts total;
  // A table whose pass ended is not looked at again in this run (its unsettled rows wait for the
  // next interval), however long the others go on.
  std::array<bool, 3> tables = {true, true, true};
  for (int round = 0; round < 10000; ++round) {
    auto counts = store->Purge(before, 1000, tables);
    if (!counts.ok()) {
      Log(LogLevel::kWarn, "retention: purge failed; retried at the next interval",
          {{"status", counts.status().ToString()}});
      break;
    }
    total.published += counts->published;
    total.received += counts->received;
    total.answers += counts->answers;
    tables = counts->more_in;
    if (!counts->more) break;
  }
  if (total.published + total.received + total.answers > 0) {
    Log(LogLevel::kInfo, "retention: personal data removed",
        {{"settled_before", absl::FormatTime(absl::RFC3339_sec, before, absl::UTCTimeZone())},
         {"published", absl::StrCat(total.published)},
         {"received", absl::StrCat(total.received)},
         {"query_answers", absl::StrCat(total.answers)}});
  }
}

// CheckStorage: the database's directory exists (or can be made) and this user may write in it,
// and an existing database file is this user's to read and write.
absl::Status CheckStorage(const v1::NodeConfig& config) {
  if (config.storage().has_postgres()) return absl::OkStatus();  // no file of ours
  namespace fs = std::filesystem;
  const fs::path db(config.storage().path());
  fs::path dir = db.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  fs::path existing = dir;
  while (!fs::exists(existing, ec) && existing.has_parent_path() && existing != existing.parent_path()) {
    existing = existing.parent_path();
  }
  if (access(existing.c_str(), W_OK | X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "storage.path: ", existing.string(), ": not writable by this user (", strerror(errno), ")"));
  }
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string file = config.storage().path() + suffix;
    if (fs::exists(file, ec) && access(file.c_str(), R_OK | W_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "storage.path: ", file, ": not readable and writable by this user (", strerror(errno),
          ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Node::Check(const v1::NodeConfig& config) {
  RETURN_IF_ERROR(CheckNodeCertificate(config));
  RETURN_IF_ERROR(LoadSignatures(config).status());
  ASSIGN_OR_RETURN(std::string ca_pem, common::ReadFile(config.tls().ca_file()));
  common::Revocations revocations(config.tls().crl_dir(), ca_pem, absl::Seconds(10));
  if (absl::Status s = revocations.Reload(); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("tls.crl_dir: ", s.message()));
  }
  if (!config.storage().key_file().empty()) RETURN_IF_ERROR(Sealer::Load(config.storage().key_file()).status());
  return CheckStorage(config);
}

absl::StatusOr<std::unique_ptr<Node>> Node::Start(const v1::NodeConfig& config,
                                                 std::unique_ptr<WriterLease> lease) {
  const bool postgres = config.storage().has_postgres();
  if (postgres && lease == nullptr) {
    return absl::FailedPreconditionError("storage.postgres: the node needs the writer lease");
  }
  RETURN_IF_ERROR(CheckNodeCertificate(config));
  ASSIGN_OR_RETURN(Signatures signatures, LoadSignatures(config));
  common::TlsFiles files{config.tls().ca_file(), config.tls().cert_file(),
                         config.tls().key_file()};
  ASSIGN_OR_RETURN(std::string ca_pem, common::ReadFile(config.tls().ca_file()));
  auto revocations = std::make_unique<common::Revocations>(
      config.tls().crl_dir(), ca_pem,
      absl::Milliseconds(google::protobuf::util::TimeUtil::DurationToMilliseconds(
          config.tls().crl_reload_interval())));
  if (absl::Status s = revocations->Reload(); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("tls.crl_dir: ", s.message()));
  }
  auto authz = std::make_unique<Authorizer>(config.federation(), config.jurisdiction(),
                                            revocations.get());
  // Certificates without a usable identity and revoked ones are refused at the handshake, before
  // they can send a request (clients of other jurisdictions per call: PERMISSION_DENIED).
  const Authorizer* check = authz.get();
  common::PeerCheck peer_check = [check](const std::vector<std::string>& uris,
                                         absl::string_view pem) {
    return check->CheckCertificate(uris, pem);
  };
  // The certificate, key and CA are read again every tls.reload_interval, by the server and by
  // this node's own connections to its peers: a renewed certificate needs no restart.
  const absl::Duration reload = absl::Milliseconds(
      google::protobuf::util::TimeUtil::DurationToMilliseconds(config.tls().reload_interval()));
  ASSIGN_OR_RETURN(auto server_creds,
                   common::ServerCredentials(files, std::move(peer_check), reload));
  ASSIGN_OR_RETURN(auto channel_creds, common::ReloadingChannelCredentials(files, reload));

  std::unique_ptr<Node> node(new Node(config));
  const std::filesystem::path db_dir = std::filesystem::path(config.storage().path()).parent_path();
  // The store holds personal data: caseway-node runs with umask 077 (main.cc), so the directory
  // and every file SQLite creates in it, now or later (WAL, shared memory), are the node user's
  // alone.
  if (!postgres && !db_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(db_dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(absl::StrCat(
          "storage.path: cannot create directory ", db_dir.string(), ": ", ec.message()));
    }
    namespace fs = std::filesystem;
    const fs::perms others = fs::perms::group_all | fs::perms::others_all;
    if ((fs::status(db_dir, ec).permissions() & others) != fs::perms::none) {
      Log(LogLevel::kWarn, "storage directory is open to other users (chmod 700 it)",
          {{"path", db_dir.string()}});
    }
  }
  // Files made by an earlier version (0644) are closed to others too.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    if (postgres) break;
    const std::string file = config.storage().path() + suffix;
    struct stat st;
    if (stat(file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      chmod(file.c_str(), st.st_mode & 0700);
    }
  }
  if (config.policy_file().empty()) {
    node->policy_ = std::make_unique<common::Policy>(common::Policy::Default());
  } else {
    auto policy = common::Policy::Load(config.policy_file());
    if (!policy.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("policy_file: ", policy.status().message()));
    }
    node->policy_ = std::make_unique<common::Policy>(std::move(*policy));
  }
  if (!config.sharing_policy_file().empty()) {
    auto sharing = common::SharingPolicy::Load(config.sharing_policy_file());
    if (!sharing.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("sharing_policy_file: ", sharing.status().message()));
    }
    node->sharing_ = std::make_unique<common::SharingPolicy>(std::move(*sharing));
  }
  StoreOptions store_options;
  store_options.policy = node->policy_.get();
  store_options.sharing = node->sharing_.get();
  store_options.path = config.storage().path();
  if (postgres) {
    store_options.postgres_dsn = config.storage().postgres().dsn();
    store_options.lease_holder = lease->holder();
    store_options.lease_epoch = lease->epoch();
    // Another node of this jurisdiction holds the lease now: this one may not write, and stops
    // at once (everything it acknowledged is committed; it restarts as the standby).
    store_options.fenced = [](const absl::Status& s) { StopLeaseLost(s.ToString()); };
    // A session frozen inside a write transaction would keep the lease row locked: the server
    // ends it after one ttl, by when this node's lease has run out anyway.
    store_options.postgres_idle_in_transaction = lease->ttl();
    // The writer's connection lost: after one ttl without renewal the lease is someone else's
    // (the node was frozen, say); otherwise a restart connects again.
    store_options.connection_lost = [lease = lease.get()](const absl::Status& s) {
      if (lease->Expired()) StopLeaseLost(s.ToString());
      Log(LogLevel::kError,
          "storage fault: the connection to PostgreSQL was lost; the node stops at once (a "
          "restart connects again)",
          {{"status", s.ToString()}});
      std::_Exit(kStorageFaultExitCode);
    };
  }
  store_options.group_commit_max = static_cast<int>(config.storage().group_commit_max());
  store_options.self = config.jurisdiction();
  store_options.log_enabled = signatures.enabled();
  if (!config.storage().key_file().empty()) {
    ASSIGN_OR_RETURN(store_options.sealer, Sealer::Load(config.storage().key_file()));
  }
  ASSIGN_OR_RETURN(node->store_, NoticeStore::Open(store_options));
  if (postgres) {
    lease->KeepRenewed([](const std::string& reason) { StopLeaseLost(reason); });
    node->lease_ = std::move(lease);
  }
  // A restored backup appends nothing before its peers have said what they hold of it.
  ASSIGN_OR_RETURN(auto restored, node->store_->RestoredFrom());
  if (restored.has_value()) {
    if (!restored->checked) {
      RETURN_IF_ERROR(ConfirmRestore(config, channel_creds, node->store_.get(), *restored));
      ASSIGN_OR_RETURN(restored, node->store_->RestoredFrom());
    }
    if (restored.has_value()) node->store_->HoldChannels(restored->unconfirmed);
  }
  RETURN_IF_ERROR(node->store_->RecordPolicy(*node->policy_));
  if (signatures.enabled()) {
    RETURN_IF_ERROR(node->store_->RecordSigningKey(signatures.key()->PublicKey()));
    const auto& xl = config.exchange_log();
    node->key_stamps_ = FileStamp(xl.signing_key_file()) + "|" + FileStamp(xl.directory_file());
    node->key_reload_ = std::make_unique<Periodic>(
        absl::Milliseconds(
            google::protobuf::util::TimeUtil::DurationToMilliseconds(config.tls().reload_interval())),
        [raw = node.get(), signatures] {
          ReloadSignatures(raw->config_, raw->store_.get(), signatures, &raw->key_stamps_,
                           &raw->key_warned_);
        });
  }
  // After the signing key's entry: the policy is signed with it.
  RETURN_IF_ERROR(node->store_->RecordSharingPolicy(
      node->sharing_.get(),
      signatures.SignerFor(common::kSharingPolicyContext)));
  Log(LogLevel::kInfo, "federation policy",
      {{"version", node->policy_->proto().version()}, {"digest", node->policy_->DigestHex()}});
  if (node->sharing_ != nullptr) {
    Log(LogLevel::kInfo, "sharing policy",
        {{"version", node->sharing_->version()},
         {"digest", common::ToHex(node->sharing_->digest())},
         {"parties", absl::StrCat(node->sharing_->proto().grants_size())}});
  }
  node->revocations_ = std::move(revocations);
  node->revocations_->Start();
  node->authz_ = std::move(authz);
  // The modules get the store through its narrow interfaces (server/store/store_parts.h).
  NoticeStore* const store = node->store_.get();
  const StoreParts parts{store, store, store, store, store, &store->policy(), store->sharing()};
  node->peer_exchange_ = std::make_unique<PeerExchangeService>(config, parts,
                                                               node->authz_.get(), signatures);
  std::set<std::string> peers;
  for (const auto& peer : config.peers()) peers.insert(peer.jurisdiction());
  node->exchange_log_ = std::make_unique<ExchangeLogService>(
      parts.log, parts.access, node->authz_.get(), signatures, std::move(peers));
  for (const auto& peer : config.peers()) {
    if (peer.serve_only()) continue;
    node->subscribers_.push_back(std::make_unique<Subscriber>(
        config, peer, channel_creds, parts.inbox, parts.log, parts.policy, signatures));
  }
  if (signatures.enabled()) {
    node->checkpointer_ = std::make_unique<Checkpointer>(
        parts.log, signatures, signatures.directory()->NoteName(config.jurisdiction()),
        config.jurisdiction(),
        absl::Milliseconds(google::protobuf::util::TimeUtil::DurationToMilliseconds(
            config.exchange_log().checkpoint_interval())),
        absl::Milliseconds(google::protobuf::util::TimeUtil::DurationToMilliseconds(
            config.exchange_log().witness_checkpoint_interval())));
    node->witness_ =
        std::make_unique<Witness>(config, channel_creds, parts.log, signatures);
    if (config.exchange_log().scrub_rate() > 0) {
      node->scrubber_ =
          std::make_unique<Scrubber>(parts.log, config.exchange_log().scrub_rate());
    }
  }
  if (config.storage().has_retention()) {
    const absl::Duration retention =
        absl::Milliseconds(google::protobuf::util::TimeUtil::DurationToMilliseconds(config.storage().retention()));
    node->retention_ = std::make_unique<Periodic>(
        absl::Milliseconds(google::protobuf::util::TimeUtil::DurationToMilliseconds(config.storage().purge_interval())),
        [store = node->store_.get(), retention] { PurgeExpired(store, retention); });
  }
  node->asker_ = std::make_unique<PeerAsker>(config, channel_creds, parts, signatures);
  Node* raw = node.get();
  node->gateway_ = std::make_unique<GatewayService>(
      config, parts, node->authz_.get(),
      [raw] {
        std::vector<v1::StatusResponse::Subscription> subs;
        for (auto& s : raw->subscribers_) {
          subs.push_back(s->Status());
          if (raw->witness_) subs.back().set_witness(raw->witness_->State(subs.back().origin()));
        }
        return subs;
      },
      [raw](const std::string& dest) { return raw->peer_exchange_->OpenStreams(dest); },
      node->asker_.get(), signatures);

  if (const std::string& address = config.metrics().listen_address(); !address.empty()) {
    ASSIGN_OR_RETURN(node->metrics_,
                     Metrics::Start(
                         address, [raw] { return raw->gateway_->Snapshot(); }, node->store_.get()));
    Metrics* metrics = node->metrics_.get();
    node->store_->SetCommitObserver([metrics](absl::Duration took, size_t ops, bool committed) {
      metrics->ObserveCommit(took, ops, committed);
    });
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen_address(), server_creds, &node->port_);
  // gRPC sets SO_REUSEPORT by default: a second process on the same port would then silently
  // take half the connections. A taken port must fail start-up instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  builder.SetMaxSendMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  // Sync handlers block on the group commit; keep their threads alive between calls instead of
  // letting gRPC create and destroy one per burst.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 4);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 256);
  // gRPC's memory for connections is bounded (limits.transport_memory_bytes): near the bound it
  // grants smaller flow-control windows, so senders slow down. And no connection holds more
  // than 256 streams at once (a client's further calls wait in its own queue).
  grpc::ResourceQuota quota("caseway-node");
  quota.Resize(static_cast<size_t>(config.limits().transport_memory_bytes()));
  builder.SetResourceQuota(quota);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 256);
  // Requests are read only when admitted (server/gateway/read_gate.h), and a stream with a read
  // pending is granted the window its message needs. The BDP probe would instead raise every
  // stream's initial window (to megabytes on a fast link), so that a caller's unread requests
  // arrived whole anyway: measured, 64 waiting 3 MB requests then cost 270 MiB and 3x a client's
  // p99; without it, under 160 MiB and 1.1-1.8x (bench/results/LATEST.md, "Floods"). Data this node sends
  // (batches to subscribers) is governed by the receivers' windows and is unaffected.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<ErrorPolicyInterceptorFactory>());
  if (node->metrics_) interceptors.push_back(node->metrics_->InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.RegisterService(node->gateway_.get());
  builder.RegisterService(node->peer_exchange_.get());
  builder.RegisterService(node->exchange_log_.get());
  // The unary methods: the caller is authorized before its request is parsed.
  node->unary_ = std::make_unique<AuthorizedFirst>(node->authz_.get());
  node->gateway_->AddUnaryMethods(node->unary_.get());
  node->peer_exchange_->AddUnaryMethods(node->unary_.get());
  node->exchange_log_->AddUnaryMethods(node->unary_.get());
  builder.RegisterService(node->unary_.get());
  node->raw_streams_ = std::make_unique<RawStreams>();
  node->gateway_->AddStreamMethods(node->raw_streams_.get());
  builder.RegisterCallbackGenericService(node->raw_streams_.get());
  // Detect half-open peer connections: ping idle ones, and accept the subscribers' pings.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  node->server_ = builder.BuildAndStart();
  if (node->server_ == nullptr || node->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("listen_address: cannot listen on ", config.listen_address()));
  }
  // A halted node answers the health service NOT_SERVING (and its peers, auditors and clients
  // see why: CheckpointResponse.halted, StatusResponse.halted, FAILED_PRECONDITION).
  grpc::HealthCheckServiceInterface* health = node->server_->GetHealthCheckService();
  auto not_serving = [health](const std::string&) {
    if (health != nullptr) health->SetServingStatus(false);
  };
  node->store_->SetHaltListener(not_serving);
  if (absl::Status halted = node->store_->Halted(); !halted.ok()) {
    not_serving("");
    Log(LogLevel::kError, "node starts halted: exchange refused until repaired",
        {{"status", halted.ToString()}});
  }
  // Check the stored log against its last checkpoint before exchanging anything: a log cut
  // back or rewritten while the node was stopped halts it here, before a new entry is appended.
  if (node->checkpointer_) {
    if (absl::Status s = node->checkpointer_->SignNow(); !s.ok()) {
      Log(LogLevel::kError, "checkpoint not signed at start-up", {{"status", s.ToString()}});
    }
  }
  for (auto& s : node->subscribers_) s->Start();
  if (node->checkpointer_) node->checkpointer_->Start();
  if (node->witness_) node->witness_->Start();
  if (node->scrubber_) node->scrubber_->Start();
  if (node->retention_) node->retention_->Start();
  if (node->key_reload_) node->key_reload_->Start();
  Log(LogLevel::kInfo, "node started",
      {{"jurisdiction", config.jurisdiction()},
       {"port", absl::StrCat(node->port_)},
       {"peers", absl::StrCat(config.peers_size())},
       {"subscriptions", absl::StrCat(node->subscribers_.size())}});
  if (node->metrics_) {
    Log(LogLevel::kInfo, "metrics endpoint",
        {{"address", config.metrics().listen_address()},
         {"port", absl::StrCat(node->metrics_->port())}});
  }
  return node;
}

Node::~Node() { Shutdown(); }

void Node::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  Log(LogLevel::kInfo, "node shutting down", {{"jurisdiction", config_.jurisdiction()}});
  if (metrics_) metrics_->StopServing();  // no scrape reads the services while they stop
  if (witness_) witness_->Stop();
  if (scrubber_) scrubber_->Stop();
  if (retention_) retention_->Stop();
  if (key_reload_) key_reload_->Stop();
  Log(LogLevel::kDebug, "shutdown: witness stopped");
  for (auto& s : subscribers_) s->Stop();
  Log(LogLevel::kDebug, "shutdown: subscribers stopped");
  if (gateway_) gateway_->Shutdown();
  if (peer_exchange_) peer_exchange_->Shutdown();
  // Our streams end on their own once the services are shut down; gRPC cancels what is left
  // after the deadline (acknowledged work is already committed; clients retry the rest).
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  Log(LogLevel::kDebug, "shutdown: server stopped");
  subscribers_.clear();
  server_.reset();
  // Every call has ended: the services can go, before the store they use.
  peer_exchange_.reset();
  gateway_.reset();
  if (checkpointer_) {
    checkpointer_->Stop();
    // Cover the log's tail, so that an auditor sees everything committed before the stop.
    absl::Status s = checkpointer_->SignNow();
    if (!s.ok()) Log(LogLevel::kError, "final checkpoint not signed", {{"status", s.ToString()}});
  }
  store_.reset();  // drains the commit queue: everything acknowledged is committed
  metrics_.reset();
  Log(LogLevel::kInfo, "node stopped", {{"jurisdiction", config_.jurisdiction()}});
}

int Node::metrics_port() const { return metrics_ ? metrics_->port() : 0; }

}  // namespace caseway::server
