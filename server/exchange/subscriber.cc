#include "server/exchange/subscriber.h"

#include <google/protobuf/util/time_util.h>
#include <signal.h>
#include <unistd.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log_entry.h"
#include "common/backoff.h"
#include "absl/strings/ascii.h"
#include "common/config.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/fault.h"
#include "common/grpc_status.h"
#include "common/identity.h"
#include "common/log.h"
#include "common/peer_channel.h"
#include "common/refusal.h"
#include "common/validation.h"
#include "common/status_macros.h"
#include "common/thread_name.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;
using google::protobuf::util::TimeUtil;

namespace {

absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Milliseconds(TimeUtil::DurationToMilliseconds(d));
}

}  // namespace

Subscriber::Subscriber(const v1::NodeConfig& config, const v1::PeerConfig& peer,
                       std::shared_ptr<grpc::ChannelCredentials> creds, InboxStore* inbox,
                       ExchangeLogStore* log, const common::Policy* policy, Signatures signatures)
    : self_(config.jurisdiction()),
      federation_(config.federation()),
      signatures_(std::move(signatures)),
      silence_limit_(3 * ToDuration(config.exchange().heartbeat_interval()) + absl::Seconds(2)),
      peer_(peer),
      exchange_(config.exchange()),
      inbox_(inbox),
      log_(log),
      policy_(*policy),
      cert_file_(config.tls().cert_file()) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  args.SetMaxSendMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  // Reconnect pacing is ours (Backoff below); keep gRPC's own short so it does not add to it.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // keep pinging an idle stream
  channel_ = common::PeerChannel::ForPeer(config, peer.address(), std::move(creds), args);
  ReadCertificateWindow();
}

void Subscriber::ReadCertificateWindow() {
  if (auto pem = common::ReadFile(cert_file_); pem.ok()) {
    if (auto window = common::CertificateValidity(*pem); window.ok()) cert_window_ = *window;
  }
}

std::string Subscriber::TimeHint(const absl::Status& s) {
  if (s.code() != absl::StatusCode::kUnavailable) return "";
  const std::string lower = absl::AsciiStrToLower(s.message());
  if (lower.find("handshake") == std::string::npos && lower.find("ssl") == std::string::npos &&
      lower.find("certificate") == std::string::npos) {
    return "";
  }
  if (cert_window_) {
    if (std::string p = common::ClockProblem(*cert_window_, common::Now()); !p.empty()) {
      return absl::StrCat(" (TLS fails because of time: this node's certificate: ", p, ")");
    }
  }
  absl::MutexLock lock(&mu_);
  if (clock_exceeded_ && clock_offset_) {
    return absl::StrCat(" (the peer's clock differed from ours by ",
                        absl::FormatDuration(absl::Trunc(*clock_offset_, absl::Seconds(1))),
                        ": a certificate may look not yet valid or expired to one side; check both "
                        "clocks)");
  }
  return "";
}

Subscriber::~Subscriber() { Stop(); }

void Subscriber::Start() {
  thread_ = std::thread([this] { Run(); });
  watchdog_ = std::thread([this] { Watchdog(); });
}

void Subscriber::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (current_ != nullptr) current_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

v1::StatusResponse::Subscription Subscriber::Status() {
  v1::StatusResponse::Subscription s;
  s.set_origin(peer_.jurisdiction());
  s.set_address(peer_.address());
  absl::MutexLock lock(&mu_);
  s.set_cursor(cursor_);
  s.set_peer_head(peer_head_);
  s.set_lag(peer_head_ > cursor_ ? peer_head_ - cursor_ : 0);
  s.set_state(state_);
  if (clock_offset_) {
    s.set_clock_offset_ms(absl::ToInt64Milliseconds(*clock_offset_));
    s.set_clock_offset_exceeded(clock_exceeded_);
  }
  if (!peer_policy_digest_.empty()) {
    s.set_peer_policy_digest(common::ToHex(peer_policy_digest_));
    s.set_policy_mismatch(peer_policy_digest_ != policy_.digest());
  }
  if (last_contact_) {
    *s.mutable_last_contact_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(*last_contact_));
  }
  s.set_last_error_code(last_error_code_);
  s.mutable_refused_batches()->insert(refused_.begin(), refused_.end());
  return s;
}

void Subscriber::Contact() {
  last_rx_ = absl::Now();
  last_contact_ = common::Now();
  if (state_ != "connected") {
    state_ = "connected";
    last_error_code_.clear();
    if (outage_since_ && outage_warned_) {
      Log(LogLevel::kInfo, "peer reachable again",
          {{"origin", peer_.jurisdiction()},
           {"outage", absl::FormatDuration(absl::Trunc(absl::Now() - *outage_since_,
                                                        absl::Seconds(1)))}});
    }
    outage_since_.reset();
    outage_warned_ = false;
  }
}

void Subscriber::ObserveClock(absl::Time peer_time) {
  const absl::Duration offset = peer_time - common::Now();
  const absl::Duration bound = ToDuration(exchange_.max_clock_offset());
  std::optional<bool> changed;
  {
    absl::MutexLock lock(&mu_);
    clock_offset_ = offset;
    // Back within the bound only below 80% of it, so that an offset near the bound does not
    // log an entry per heartbeat.
    if (!clock_exceeded_ && absl::AbsDuration(offset) > bound) {
      clock_exceeded_ = true;
      changed = true;
    } else if (clock_exceeded_ && absl::AbsDuration(offset) < bound * 0.8) {
      clock_exceeded_ = false;
      changed = false;
    }
  }
  if (!changed) return;
  // A peer that flips its heartbeat time around the bound must not grow our log by an entry a
  // second: at most kClockRecordsPerHour entries per peer an hour; the state above stays exact.
  const absl::Time real_now = absl::Now();
  while (!clock_records_.empty() && real_now - clock_records_.front() > absl::Hours(1)) {
    clock_records_.pop_front();
  }
  const bool record = clock_records_.size() < kClockRecordsPerHour;
  if (record) clock_records_.push_back(real_now);
  const std::string text = absl::FormatDuration(absl::Trunc(offset, absl::Milliseconds(1)));
  if (*changed) {
    Log(LogLevel::kWarn,
        "clock offset to peer beyond exchange.max_clock_offset: check both clocks (NTP); "
        "deadlines and the assessment of this pair may be judged on skewed times",
        {{"origin", peer_.jurisdiction()}, {"offset", text},
         {"bound", absl::FormatDuration(bound)}});
  } else {
    Log(LogLevel::kInfo, "clock offset to peer back within bounds",
        {{"origin", peer_.jurisdiction()}, {"offset", text}});
  }
  if (!record) {
    common::LogLimited(LogLevel::kWarn, "clock offset changes too often; not all are logged",
                       {{"origin", peer_.jurisdiction()}});
    return;
  }
  if (absl::Status s = log_->RecordClockOffset(peer_.jurisdiction(), offset, *changed); !s.ok()) {
    Log(LogLevel::kWarn, "clock offset not recorded in the exchange log",
        {{"origin", peer_.jurisdiction()}, {"status", s.ToString()}});
  }
}

// Watchdog cancels a session from which nothing (not even a heartbeat) arrived for
// silence_limit_: a peer that vanished without closing the connection is detected in seconds.
void Subscriber::Watchdog() {
  common::NameThisThread("cw-sub-watch");
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), silence_limit_ / 4);
    if (current_ != nullptr && absl::Now() - last_rx_ > silence_limit_) {
      Log(LogLevel::kWarn, "peer silent; reconnecting",
          {{"origin", peer_.jurisdiction()}, {"silent_for", absl::FormatDuration(silence_limit_)}});
      current_->TryCancel();
      // A peer of two nodes (active/standby): the silent one may be frozen, its connection open;
      // the next session tries the other.
      channel_->Saw(grpc::StatusCode::DEADLINE_EXCEEDED);
      last_rx_ = absl::Now();
    } else if (current_ != nullptr && channel_->Renewable()) {
      // The certificate was renewed: end this session, whose connection presented the old one;
      // the next session's handshake presents the new one (common/peer_channel.h).
      Log(LogLevel::kInfo, "certificate renewed: reconnecting", {{"origin", peer_.jurisdiction()}});
      current_->TryCancel();
    }
  }
}

void Subscriber::Run() {
  common::NameThisThread("cw-sub-" + peer_.jurisdiction());
  common::Backoff backoff(ToDuration(exchange_.backoff_initial()),
                          ToDuration(exchange_.backoff_max()), std::random_device{}());
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    absl::Time started = absl::Now();
    absl::Status s = Session();
    // A session that ran for a while was a success: start the backoff afresh.
    if (absl::Now() - started > absl::Seconds(5)) backoff.Reset();
    absl::Duration delay = backoff.Next();
    const std::string hint = s.ok() ? "" : TimeHint(s);
    // An outage is logged at info when it starts and at debug while it is retried; once it has
    // outlasted the retries' growth (kOutageRetries times exchange.backoff_max) at warn, then
    // hourly while it lasts (docs/operator.md, "Logs").
    LogLevel level = LogLevel::kDebug;
    std::string message = "subscription interrupted";
    absl::Duration outage;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      state_ = absl::StrCat("backoff: ", s.ToString(), hint);
      last_error_code_ = absl::StatusCodeToString(s.code());
      const absl::Time now = absl::Now();
      if (!outage_since_) {
        outage_since_ = now;
        level = LogLevel::kInfo;
      }
      outage = now - *outage_since_;
      const absl::Duration warn_after = kOutageRetries * ToDuration(exchange_.backoff_max());
      if (outage >= warn_after && (!outage_warned_ || now - last_outage_warning_ >= absl::Hours(1))) {
        message = outage_warned_ ? "peer still unreachable" : "peer unreachable";
        outage_warned_ = true;
        last_outage_warning_ = now;
        level = LogLevel::kWarn;
      }
    }
    Log(level, message,
        {{"origin", peer_.jurisdiction()},
         {"status", s.ToString()},
         {"outage", absl::FormatDuration(absl::Trunc(outage, absl::Seconds(1)))},
         {"retry_in", absl::FormatDuration(delay)}});
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
  }
}

absl::Status Subscriber::VerifyBatch(const v1::Batch& batch) {
  // With the origin's key valid at the manifest's created_at (keys rotate: the directory lists
  // each with its period).
  const auto directory = signatures_.directory();
  ASSIGN_OR_RETURN(auto keys, directory->Keys(peer_.jurisdiction()));
  v1::BatchManifest m;
  m.ParseFromString(batch.manifest().message());  // unparsable: CheckBatchManifest says so
  const absl::Time at = common::TimeOf(m.created_at());
  absl::Status last = absl::PermissionDeniedError(absl::StrCat(
      "batch.manifest.signature: ", peer_.jurisdiction(), " has no signing key valid at ",
      absl::FormatTime(absl::RFC3339_sec, at, absl::UTCTimeZone()), ", the manifest's created_at"));
  for (const auto& key : keys) {
    if (!key.ValidAt(at)) continue;
    last = common::CheckBatchManifest(batch, peer_.jurisdiction(), self_, key.public_key);
    if (last.code() != absl::StatusCode::kPermissionDenied) return last;
  }
  return last;
}

absl::Status Subscriber::Session() {
  // A halted node receives nothing: it could not log or receipt it.
  RETURN_IF_ERROR(log_->Halted());
  auto cursor = inbox_->Cursor(peer_.jurisdiction());
  if (!cursor.ok()) return cursor.status();
  // A connection made with a certificate since renewed, or one the peer refused as
  // unauthenticated (say, the old certificate revoked), is not used again (common/peer_channel.h).
  bool renewed = false;
  auto stub = v1::PeerExchange::NewStub(channel_->Get(&renewed));
  if (renewed) {
    Log(LogLevel::kInfo, "certificate renewed: new connection", {{"origin", peer_.jurisdiction()}});
    ReadCertificateWindow();
  }
  grpc::ClientContext ctx;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("stopping");
    current_ = &ctx;
    cursor_ = *cursor;
    state_ = "connecting";
    last_rx_ = absl::Now();
  }
  struct Clear {
    Subscriber* s;
    ~Clear() {
      absl::MutexLock lock(&s->mu_);
      s->current_ = nullptr;
    }
  } clear{this};

  auto stream = stub->Subscribe(&ctx);
  v1::SubscribeRequest open;
  open.mutable_open()->set_destination(self_);
  open.mutable_open()->set_cursor(*cursor);
  open.mutable_open()->set_window(exchange_.window_batches());
  if (!stream->Write(open)) return common::FromGrpcStatus(stream->Finish());

  // Two threads per session: this one reads the stream and checks each batch (the identity, the
  // manifest's signature and every digest, the entries); a storer commits the checked batches in
  // order and writes every message this side sends (acks with their receipts, receipts sent
  // again). So the next batch is checked while the one before commits: in a catch-up the two
  // took turns, the check's CPU and the commit's each idle while the other ran. At most three
  // batches are held: the one being stored, one checked and queued, and one this thread has read
  // and checked and holds until there is room; the origin's window keeps more in flight. A write
  // fails only once the call is over, so this thread's reads then end too.
  struct Work {
    std::unique_ptr<v1::SubscribeResponse> resp;  // owns the batch `checked` points into
    std::optional<common::CheckedBatch> checked;  // a batch to store and ack, or else
    uint64_t resend_above = 0;                    // the receipts to send again (see below)
  };
  absl::Mutex work_mu;
  std::deque<Work> work;              // guarded by work_mu
  bool work_closed = false;           // guarded by work_mu: nothing more will be queued
  absl::Status store_failure;         // guarded by work_mu: why the storer stopped
  bool stream_broken = false;         // the storer's: a write failed, the stream is gone
  const std::string origin = peer_.jurisdiction();
  auto store = [&](Work& w) -> absl::Status {
    if (!w.checked) {
      // Receipts committed here that the origin has not recorded (we crashed before acking, or
      // the stream broke): only batches committed before this session; later ones are acked as
      // they are stored, and the heartbeat may predate an ack in flight.
      auto receipts = inbox_->ReceiptsSent(origin, w.resend_above);
      if (!receipts.ok()) return receipts.status();
      for (auto& [last_seq, receipt] : *receipts) {
        if (last_seq > *cursor) break;
        v1::SubscribeRequest ack;
        ack.mutable_ack()->set_seq(last_seq);
        *ack.mutable_ack()->mutable_receipt() = std::move(receipt);
        if (!stream->Write(ack)) {
          stream_broken = true;
          break;
        }
      }
      return absl::OkStatus();
    }
    const v1::Batch& batch = w.checked->batch();
    auto receipt =
        inbox_->StoreReceived(*w.checked, signatures_.SignerFor(common::kReceiptContext));
    if (!receipt.ok()) return receipt.status();
    const uint64_t stored = batch.first_seq() + batch.entries_size() - 1;
    // Test fault: die between the commit and the receipt.
    if (common::FaultHits("crash_after_receive_commit", batch.first_seq(), stored)) {
      kill(getpid(), SIGKILL);
    }
    {
      absl::MutexLock lock(&mu_);
      cursor_ = stored;
      peer_head_ = std::max(peer_head_, stored);
    }
    if (signatures_.enabled() && !receipt->has_value()) return absl::OkStatus();  // (test fault)
    v1::SubscribeRequest ack;
    ack.mutable_ack()->set_seq(stored);
    if (receipt->has_value()) *ack.mutable_ack()->mutable_receipt() = std::move(**receipt);
    stream_broken = !stream->Write(ack);
    return absl::OkStatus();
  };
  std::thread storer([&] {
    common::NameThisThread("cw-store-" + origin);
    for (;;) {
      Work w;
      {
        absl::MutexLock lock(&work_mu);
        auto ready = [&] { return !work.empty() || work_closed; };
        work_mu.Await(absl::Condition(&ready));
        if (work.empty()) return;
        w = std::move(work.front());
        work.pop_front();
      }
      absl::Status s = store(w);
      if (!s.ok() || stream_broken) {
        absl::MutexLock lock(&work_mu);
        // A failed write means the stream is gone: its reads end by themselves, and its status
        // says why. A failed store refuses the session like a bad batch.
        if (!s.ok()) {
          store_failure = s;
          ctx.TryCancel();
        }
        work_closed = true;
        work.clear();
        return;
      }
    }
  });
  auto enqueue = [&](Work w) -> bool {
    absl::MutexLock lock(&work_mu);
    auto room = [&] { return work.empty() || work_closed; };
    work_mu.Await(absl::Condition(&room));
    if (work_closed) return false;
    work.push_back(std::move(w));
    return true;
  };

  uint64_t checked_through = *cursor;  // the last seq checked and queued
  bool identity_checked = false;
  bool receipts_resent = false;
  absl::Status failure;
  auto resp = std::make_unique<v1::SubscribeResponse>();
  while (stream->Read(resp.get())) {
    if (!identity_checked) {
      // TLS verified the certificate chain and the host name; the SPIFFE id must be the peer's.
      auto auth = ctx.auth_context();
      auto id = auth ? common::IdentityFromAuthContext(*auth, federation_)
                     : absl::StatusOr<common::Identity>(absl::UnauthenticatedError("no auth"));
      if (!id.ok() || id->role != common::Role::kNode || id->jurisdiction != origin) {
        failure = absl::PermissionDeniedError(
            absl::StrCat("peer certificate is not spiffe://", federation_, "/node/", origin));
        break;
      }
      identity_checked = true;
    }
    {
      absl::MutexLock lock(&mu_);
      Contact();
    }
    if (resp->has_heartbeat()) {
      const auto& hb = resp->heartbeat();
      if (hb.has_sent_at()) {
        // Saturating: the peer chose these numbers.
        ObserveClock(absl::FromUnixSeconds(hb.sent_at().seconds()) +
                     absl::Nanoseconds(hb.sent_at().nanos()));
      }
      {
        absl::MutexLock lock(&mu_);
        peer_head_ = hb.head();
        const std::string& theirs = hb.policy_digest();
        if (!theirs.empty() && theirs != peer_policy_digest_) {
          peer_policy_digest_ = theirs;
          if (theirs != policy_.digest()) {
            Log(LogLevel::kWarn,
                "peer runs another federation policy: deadlines and the assessment may disagree",
                {{"origin", origin},
                 {"peer_policy", common::ToHex(theirs)},
                 {"our_policy", policy_.DigestHex()}});
          }
        }
      }
      // Receipts the origin lacks are sent again once per session, by the storer, in order
      // with the acks.
      if (signatures_.enabled() && !receipts_resent && hb.receipted() < *cursor) {
        receipts_resent = true;
        Work w;
        w.resend_above = hb.receipted();
        if (!enqueue(std::move(w))) break;
      }
      continue;
    }
    const v1::Batch& batch = resp->batch();
    if (batch.first_seq() != checked_through + 1 || batch.entries_size() == 0) {
      failure = absl::FailedPreconditionError(absl::StrCat(
          "batch.first_seq: ", batch.first_seq(), " is not cursor+1 (", checked_through + 1, ")"));
      break;
    }
    if (signatures_.enabled()) {
      failure = VerifyBatch(batch);
      if (!failure.ok()) break;
    }
    // A peer may deliver only its own notices, addressed to this node.
    auto checked = common::CheckedBatch::Check(batch, origin, self_);
    if (!checked.ok()) {
      failure = checked.status();
      break;
    }
    checked_through = batch.first_seq() + batch.entries_size() - 1;
    Work w;
    w.checked.emplace(std::move(*checked));
    w.resp = std::move(resp);
    resp = std::make_unique<v1::SubscribeResponse>();
    if (!enqueue(std::move(w))) break;
  }
  // The batches checked before a refused one are still stored and acked (what the origin sent
  // and signed, receipted as before): the storer finishes what is queued, then the stream ends.
  {
    absl::MutexLock lock(&work_mu);
    work_closed = true;
  }
  storer.join();
  // The storer is done: store_failure needs no lock now. Both may have failed at once (a store
  // error while the next batch was refused): each is logged and counted.
  for (const absl::Status* s : {&failure, &store_failure}) {
    if (s->ok()) continue;
    Log(LogLevel::kError, "batch refused", {{"origin", origin}, {"status", s->ToString()}});
    std::string reason = common::ReasonOf(*s);
    if (reason.empty()) reason = common::DefaultReason(s->code(), s->message());
    absl::MutexLock lock(&mu_);
    ++refused_[reason];
  }
  if (failure.ok()) failure = store_failure;
  if (!failure.ok()) ctx.TryCancel();
  grpc::Status finish = stream->Finish();
  channel_->Saw(finish.error_code());
  if (!failure.ok()) return failure;
  if (finish.ok()) return absl::UnavailableError("peer closed the stream");
  return common::FromGrpcStatus(finish);
}

}  // namespace caseway::server
