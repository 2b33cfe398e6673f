#include "server/exchange/peer_exchange_service.h"

#include <google/protobuf/util/time_util.h>

#include <map>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/proto_bytes.h"
#include "common/fault.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;
using common::ToGrpcStatus;
using google::protobuf::util::TimeUtil;

PeerExchangeService::PeerExchangeService(const v1::NodeConfig& config, NoticeStore* store,
                                         const Authorizer* authz, Signatures signatures)
    : self_(config.jurisdiction()),
      signatures_(std::move(signatures)),
      batch_max_entries_(config.exchange().batch_max_entries()),
      default_window_(config.exchange().window_batches()),
      // Leave room for the manifest and framing under the peer's receive limit (the same limit
      // federation-wide): entries take at most half of it.
      max_batch_bytes_(config.limits().max_message_bytes() / 2),
      heartbeat_interval_(absl::Milliseconds(
          TimeUtil::DurationToMilliseconds(config.exchange().heartbeat_interval()))),
      store_(store),
      authz_(authz) {}

uint32_t PeerExchangeService::OpenStreams(const std::string& destination) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(destination);
  return it == open_.end() ? 0 : it->second;
}

absl::Status PeerExchangeService::SignBatch(const std::string& dest, v1::Batch& batch) {
  v1::BatchManifest m;
  m.set_origin(self_);
  m.set_destination(dest);
  m.set_first_seq(batch.first_seq());
  m.set_last_seq(batch.first_seq() + batch.entries_size() - 1);
  for (const auto& e : batch.entries()) m.add_digests(common::Sha256(e.notice()));
  *m.mutable_created_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(absl::Now()));
  v1::Signed* signed_manifest = batch.mutable_manifest();
  signed_manifest->set_message(common::DeterministicBytes(m));
  signed_manifest->set_signature(
      signatures_.key->Sign(common::kManifestContext, signed_manifest->message()));
  signed_manifest->set_signer(self_);
  // Test faults: a forged signature, or an entry altered after signing (the subscriber must
  // refuse both); an origin that omits its SENT entry, or logs another manifest than it sends.
  if (common::FaultHits("bad_manifest_signature", m.first_seq(), m.last_seq())) {
    (*signed_manifest->mutable_signature())[0] ^= 1;
  }
  if (common::FaultHits("tamper_entry", m.first_seq(), m.last_seq())) {
    batch.mutable_entries(0)->mutable_notice()->push_back('\0');
  }
  if (common::FaultHits("omit_sent_log", m.first_seq(), m.last_seq())) return absl::OkStatus();
  if (common::FaultHits("equivocate_sent", m.first_seq(), m.last_seq())) {
    v1::BatchManifest other = m;
    other.set_digests(0, common::Sha256("equivocation"));
    v1::Signed logged;
    logged.set_message(common::DeterministicBytes(other));
    logged.set_signature(signatures_.key->Sign(common::kManifestContext, logged.message()));
    logged.set_signer(self_);
    return store_->RecordSent(dest, other, logged);
  }
  return store_->RecordSent(dest, m, *signed_manifest);
}

absl::StatusOr<v1::Receipt> PeerExchangeService::CheckReceipt(
    const std::string& dest, const v1::SubscribeRequest::Ack& ack,
    const std::string& expected_manifest_digest) {
  if (!ack.has_receipt()) return absl::InvalidArgumentError("ack.receipt: required");
  ASSIGN_OR_RETURN(std::string key, signatures_.directory->Key(dest));
  absl::Status sig = common::VerifySignature(key, common::kReceiptContext,
                                             ack.receipt().message(), ack.receipt().signature());
  if (!sig.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("ack.receipt.signature: does not verify with the key of ", dest));
  }
  v1::Receipt receipt;
  if (!receipt.ParseFromString(ack.receipt().message())) {
    return absl::InvalidArgumentError("ack.receipt.message: not a caseway.v1.Receipt");
  }
  if (receipt.receiver() != dest || receipt.origin() != self_) {
    return absl::InvalidArgumentError("ack.receipt: receiver and origin must name this channel");
  }
  if (receipt.last_seq() != ack.seq()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ack.receipt.last_seq: ", receipt.last_seq(), " is not ack.seq ", ack.seq()));
  }
  std::string expected = expected_manifest_digest;
  if (expected.empty()) {
    auto stored = store_->SentManifestDigest(dest, receipt.first_seq(), receipt.last_seq());
    if (!stored.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ack.receipt: no manifest was sent for ", receipt.first_seq(), "..", receipt.last_seq()));
    }
    expected = *stored;
  }
  if (receipt.manifest_digest() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ack.receipt.manifest_digest: does not name the manifest sent for ", receipt.first_seq(),
        "..", receipt.last_seq()));
  }
  return receipt;
}

grpc::Status PeerExchangeService::Subscribe(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::SubscribeResponse, v1::SubscribeRequest>* stream) {
  auto id = authz_->Check(*ctx, Rpc::kSubscribe);
  if (!id.ok()) return ToGrpcStatus(id.status());
  v1::SubscribeRequest first;
  if (!stream->Read(&first)) return grpc::Status::OK;
  if (!first.has_open()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "open: the first SubscribeRequest must be open");
  }
  const v1::SubscribeRequest::Open& open = first.open();
  const std::string& dest = id->jurisdiction;
  if (open.destination() != dest) {
    Log(LogLevel::kWarn, "subscription to another node's channel refused",
        {{"caller", id->ToString()}});
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("open.destination: ", id->ToString(),
                                     " may subscribe only to channel ", dest, ", not ",
                                     open.destination()));
  }
  if (open.window() > 64) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "open.window: must be in 0..64");
  }
  const ChannelState at_open = store_->Channel(dest);
  if (open.cursor() > at_open.head) {
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        absl::StrCat("open.cursor: ", open.cursor(), " is beyond the head ",
                                     at_open.head, " of channel ", dest));
  }
  if (signatures_.enabled() && !signatures_.directory->Key(dest).ok()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat(dest, " is not listed in the federation directory"));
  }
  // Without receipts the subscriber's cursor is its acknowledgement; with them, receipts are.
  if (!signatures_.enabled() && open.cursor() > at_open.acked) {
    store_->RecordAck(dest, open.cursor()).IgnoreError();
  }
  const uint32_t window = open.window() == 0 ? default_window_ : open.window();
  {
    absl::MutexLock lock(&mu_);
    ++open_[dest];
  }
  absl::Cleanup closed = [&] {
    absl::MutexLock lock(&mu_);
    --open_[dest];
  };
  Log(LogLevel::kInfo, "subscription opened",
      {{"destination", dest}, {"cursor", absl::StrCat(open.cursor())}});

  // Shared between this (sending) thread and the ack reader.
  absl::Mutex mu;
  // last seq of each unacked batch -> digest of the manifest sent (whose range the store knows)
  std::map<uint64_t, std::string> inflight;
  uint64_t acked = std::min(store_->Channel(dest).acked, open.cursor());
  uint64_t sent = open.cursor();
  bool reader_done = false;
  absl::Status reader_error;
  std::thread reader([&] {
    v1::SubscribeRequest req;
    while (stream->Read(&req)) {
      absl::Status s;
      std::string expected;
      const uint64_t seq = req.ack().seq();
      {
        absl::MutexLock lock(&mu);
        if (!req.has_ack()) {
          s = absl::InvalidArgumentError("ack: every SubscribeRequest after open must be ack");
        } else if (seq > sent) {
          s = absl::InvalidArgumentError(
              absl::StrCat("ack.seq: ", seq, " is beyond what was sent (", sent, ")"));
        } else if (seq <= acked) {
          continue;  // already recorded (a receipt sent again after a reconnect): nothing to do
        } else if (auto it = inflight.find(seq); it != inflight.end()) {
          expected = it->second;
        }
      }
      if (s.ok()) {
        if (signatures_.enabled()) {
          auto receipt = CheckReceipt(dest, req.ack(), expected);
          s = receipt.ok() ? store_->RecordReceipt(dest, *receipt, req.ack().receipt())
                           : receipt.status();
        } else {
          s = store_->RecordAck(dest, seq);
        }
      }
      absl::MutexLock lock(&mu);
      if (!s.ok()) {
        reader_error = s;
        break;
      }
      acked = std::max(acked, seq);
      inflight.erase(inflight.begin(), inflight.upper_bound(seq));
    }
    absl::MutexLock lock(&mu);
    reader_done = true;
  });

  absl::Status result;
  absl::Time next_heartbeat = absl::Now();  // the first heartbeat tells the head at once
  while (result.ok()) {
    uint64_t version = store_->Version();
    uint64_t from;
    bool can_send;
    {
      absl::MutexLock lock(&mu);
      if (!reader_error.ok()) {
        result = reader_error;
        break;
      }
      if (reader_done) break;
      from = sent + 1;
      can_send = inflight.size() < window;
    }
    if (ctx->IsCancelled()) break;
    if (shutting_down_) {
      result = absl::UnavailableError("node shutting down");
      break;
    }
    const ChannelState channel = store_->Channel(dest);
    if (can_send && channel.head >= from) {
      auto entries = store_->ReadChannel(dest, from, batch_max_entries_, max_batch_bytes_);
      if (!entries.ok()) {
        result = entries.status();
        break;
      }
      if (!entries->empty()) {
        v1::SubscribeResponse resp;
        v1::Batch* batch = resp.mutable_batch();
        batch->set_first_seq(from);
        const uint64_t last = entries->back().seq();
        for (auto& e : *entries) *batch->add_entries() = std::move(e);
        if (signatures_.enabled()) {
          result = SignBatch(dest, *batch);
          if (!result.ok()) break;
        }
        {
          absl::MutexLock lock(&mu);
          inflight[last] = signatures_.enabled() ? common::Sha256(batch->manifest().message()) : "";
          sent = last;
        }
        if (!stream->Write(resp)) {
          result = absl::UnavailableError("write failed: the subscriber went away or the batch "
                                          "exceeds the transport limit");
          break;
        }
        continue;
      }
    }
    absl::Time now = absl::Now();
    if (now >= next_heartbeat) {
      v1::SubscribeResponse resp;
      resp.mutable_heartbeat()->set_head(channel.head);
      resp.mutable_heartbeat()->set_receipted(channel.acked);
      if (!stream->Write(resp)) break;
      next_heartbeat = now + heartbeat_interval_;
    }
    // Sleep until a commit (new entries, an ack) or the next heartbeat; poll the reader's and the
    // call's state at least every 100 ms.
    store_->Wait(version, std::min(next_heartbeat, now + absl::Milliseconds(100)));
  }
  if (!result.ok()) {
    Log(LogLevel::kWarn, "subscription ended with error",
        {{"destination", dest}, {"status", result.ToString()}});
  }
  ctx->TryCancel();
  reader.join();
  Log(LogLevel::kInfo, "subscription closed", {{"destination", dest}});
  return ToGrpcStatus(result);
}

}  // namespace caseway::server
