#include "caseway/client/client.h"

#include <grpcpp/grpcpp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/clock.h"
#include "common/tls.h"
#include "common/tls_diagnosis.h"

namespace caseway::client {

using common::FromGrpcStatus;

absl::StatusOr<ConnectionOptions> LoadClientConfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": YAML syntax error at line ",
                                                   e.mark.line + 1, ": ", e.msg));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": a mapping expected"));
  std::string dir = path.find('/') == std::string::npos ? "" : path.substr(0, path.rfind('/') + 1);
  ConnectionOptions o;
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": line ", kv.first.Mark().line + 1,
                                                     ": mapping keys must be plain scalars"));
    }
    std::string key = kv.first.Scalar();
    std::string value = kv.second.IsScalar() ? kv.second.Scalar() : "";
    auto resolve = [&](const std::string& v) { return v.empty() || v[0] == '/' ? v : dir + v; };
    if (key == "address") o.address = value;
    else if (key == "ca_file") o.ca_file = resolve(value);
    else if (key == "cert_file") o.cert_file = resolve(value);
    else if (key == "key_file") o.key_file = resolve(value);
    else if (key == "purpose") o.purpose = value;
    else {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", key, ": unknown key (address, ca_file, cert_file, key_file, purpose)"));
    }
  }
  for (auto [name, value] : {std::pair<const char*, std::string*>{"address", &o.address},
                             {"ca_file", &o.ca_file}, {"cert_file", &o.cert_file},
                             {"key_file", &o.key_file}}) {
    if (value->empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", name, ": required"));
  }
  return o;
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ConnectionOptions& options) {
  ASSIGN_OR_RETURN(auto creds, common::ChannelCredentials(common::TlsFiles{
                                   options.ca_file, options.cert_file, options.key_file}));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(-1);  // the node enforces its own limit, with a clear status
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::Gateway::Stub>> stubs;
  if (options.address.find(',') != std::string::npos) {
    // An active/standby pair: the standby starts listening when it takes over; try it again
    // within 200 ms..1 s rather than gRPC's default backoff of up to two minutes.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // A node that froze keeps its connection open: pings find it (every 15 s while a call is
    // open, above the node's 10 s minimum, unanswered after 5 s) and end its Inbox stream.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 15000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  for (absl::string_view address : absl::StrSplit(options.address, ',', absl::SkipWhitespace())) {
    channels.push_back(
        grpc::CreateCustomChannel(std::string(absl::StripAsciiWhitespace(address)), creds, args));
    stubs.push_back(v1::Gateway::NewStub(channels.back()));
  }
  if (stubs.empty()) return absl::InvalidArgumentError("address: required");
  return std::unique_ptr<Client>(new Client(std::move(channels), std::move(stubs), options));
}

absl::Status Client::Checked(const grpc::Status& status) const {
  absl::Status s = FromGrpcStatus(status);
  if (s.code() != absl::StatusCode::kUnavailable) return s;
  if (stubs_.size() > 1) return s;  // several addresses: which one would be a guess
  const std::string why = common::DiagnoseHandshake(
      options_.address,
      common::TlsFiles{options_.ca_file, options_.cert_file, options_.key_file}, common::Now());
  if (why.empty()) return s;
  return absl::UnavailableError(absl::StrCat(s.message(), "; TLS: ", why));
}

grpc::Status CallIdempotent(const std::function<grpc::Status(grpc::ClientContext*)>& call,
                            const std::function<void()>& failover) {
  const auto deadline = std::chrono::system_clock::now() + kFailoverBudget;
  grpc::Status unavailable;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext ctx;
    const auto now = std::chrono::system_clock::now();
    if (attempt > 1) {
      // Wait a little for this address to (re)connect: a standby starts listening only once it
      // has taken over.
      ctx.set_wait_for_ready(true);
      ctx.set_deadline(std::min(deadline, now + std::chrono::seconds(2)));
    } else {
      // A node that froze (its machine stopped answering, its connection still open) must not
      // hold the call: after 5 s the next address is tried (the call is idempotent).
      ctx.set_deadline(now + std::chrono::seconds(5));
    }
    grpc::Status s = call(&ctx);
    const bool waited = s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE && !waited) return s;
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) unavailable = s;
    if (std::chrono::system_clock::now() >= deadline) return unavailable.ok() ? s : unavailable;
    failover();
    absl::SleepFor(absl::Milliseconds(100));
  }
}

grpc::Status CallIdempotent(const std::function<grpc::Status(grpc::ClientContext*)>& call) {
  const auto deadline = std::chrono::system_clock::now() + kUnavailableBudget;
  grpc::Status unavailable;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext ctx;
    if (attempt > 1) {
      // Wait for the channel to (re)connect instead of failing fast, within the budget.
      ctx.set_wait_for_ready(true);
      ctx.set_deadline(deadline);
    }
    grpc::Status s = call(&ctx);
    if (attempt > 1 && s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
        std::chrono::system_clock::now() >= deadline) {
      return unavailable;  // our own budget ran out: report why we were retrying
    }
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE || attempt == kUnavailableAttempts ||
        std::chrono::system_clock::now() >= deadline) {
      return s;
    }
    unavailable = s;
    absl::SleepFor(absl::Milliseconds(100) * attempt);
  }
}

absl::StatusOr<v1::PublishResult> Client::Publish(const v1::Notice& notice, bool validate_only) {
  v1::PublishRequest req;
  *req.mutable_notice() = notice;
  req.set_validate_only(validate_only);
  v1::PublishResult result;
  RETURN_IF_ERROR(Checked(Idempotent(
      [&](grpc::ClientContext* ctx) { return stub()->Publish(ctx, req, &result); })));
  return result;
}

absl::StatusOr<std::vector<v1::PublishResult>> Client::PublishBatch(
    const std::vector<v1::Notice>& notices, bool validate_only) {
  v1::PublishBatchRequest req;
  req.set_validate_only(validate_only);
  for (const auto& n : notices) *req.add_notices() = n;
  v1::PublishBatchResponse resp;
  RETURN_IF_ERROR(Checked(Idempotent(
      [&](grpc::ClientContext* ctx) { return stub()->PublishBatch(ctx, req, &resp); })));
  return std::vector<v1::PublishResult>(resp.results().begin(), resp.results().end());
}

absl::StatusOr<v1::StatusResponse> Client::Status() {
  v1::StatusResponse resp;
  RETURN_IF_ERROR(Checked(Idempotent(
      [&](grpc::ClientContext* ctx) { return stub()->Status(ctx, v1::StatusRequest(), &resp); })));
  return resp;
}

absl::StatusOr<v1::TodoResponse> Client::Todo(const v1::TodoRequest& request) {
  v1::TodoResponse resp;
  RETURN_IF_ERROR(Checked(Idempotent(
      [&](grpc::ClientContext* ctx) { return stub()->Todo(ctx, request, &resp); })));
  return resp;
}

absl::StatusOr<v1::QueryPeerResponse> Client::QueryPeer(const v1::QueryPeerRequest& request) {
  v1::QueryPeerResponse resp;
  grpc::ClientContext ctx;
  // The node waits up to 10 s for the peer.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::QueryPeerRequest req = request;
  if (req.purpose().empty()) req.set_purpose(options_.purpose);
  RETURN_IF_ERROR(Checked(stub()->QueryPeer(&ctx, req, &resp)));
  return resp;
}

absl::StatusOr<v1::CaseResponse> Client::Case(const std::string& case_id, const std::string& purpose) {
  v1::CaseRequest req;
  req.set_case_id(case_id);
  req.set_purpose(purpose.empty() ? options_.purpose : purpose);
  v1::CaseResponse resp;
  RETURN_IF_ERROR(Checked(Idempotent(
      [&](grpc::ClientContext* ctx) { return stub()->Case(ctx, req, &resp); })));
  return resp;
}

absl::StatusOr<v1::AccessLogResponse> Client::AccessLog(const v1::AccessLogRequest& request) {
  v1::AccessLogRequest req = request;
  if (req.purpose().empty()) req.set_purpose(options_.purpose);
  v1::AccessLogResponse resp;
  RETURN_IF_ERROR(Checked(Idempotent(
      [&](grpc::ClientContext* ctx) { return stub()->AccessLog(ctx, req, &resp); })));
  return resp;
}

// HandedOver holds the inbox_seqs handed to the callback as runs [first, last]: a stream sends
// them in increasing order, so they are a few runs however long the call follows.
struct Client::HandedOver {
  std::vector<std::pair<uint64_t, uint64_t>> runs;  // sorted, disjoint
  uint64_t count = 0;       // items handed over in all
  bool new_stream = false;  // the next item is the first of a stream opened again

  bool Contains(uint64_t seq) const {
    auto it = std::upper_bound(runs.begin(), runs.end(), std::make_pair(seq, UINT64_MAX));
    return it != runs.begin() && std::prev(it)->second >= seq;
  }
  void Add(uint64_t seq) {
    ++count;
    if (!runs.empty() && runs.back().second + 1 == seq) {
      ++runs.back().second;
    } else if (runs.empty() || runs.back().second < seq) {
      runs.emplace_back(seq, seq);
    } else {
      runs.insert(std::upper_bound(runs.begin(), runs.end(), std::make_pair(seq, seq)),
                  std::make_pair(seq, seq));
    }
  }
  // A stream sends the oldest unacknowledged item first: nothing before it comes again.
  void FirstOfStream(uint64_t seq) {
    while (!runs.empty() && runs.front().second < seq) runs.erase(runs.begin());
  }
};

absl::Status Client::Inbox(const InboxOptions& options,
                           const std::function<bool(const v1::InboxItem&)>& on_item) {
  if (stubs_.size() == 1) return InboxStream(options, on_item, nullptr);
  HandedOver handed;
  auto deadline = std::chrono::system_clock::now() + kFailoverBudget;
  for (;;) {
    const uint64_t before = handed.count;
    handed.new_stream = true;
    absl::Status s = InboxStream(options, on_item, &handed);
    if (s.code() != absl::StatusCode::kUnavailable) return s;
    const auto now = std::chrono::system_clock::now();
    if (handed.count > before) deadline = now + kFailoverBudget;  // that node delivered
    if (now >= deadline) return s;
    // The next address that connects within 2 s (a standby listens once it has taken over).
    do {
      Failover();
    } while (!channels_[current_.load() % channels_.size()]->WaitForConnected(
                 std::min(deadline, std::chrono::system_clock::now() + std::chrono::seconds(2))) &&
             std::chrono::system_clock::now() < deadline);
  }
}

absl::Status Client::InboxStream(const InboxOptions& options,
                                 const std::function<bool(const v1::InboxItem&)>& on_item,
                                 HandedOver* handed) {
  grpc::ClientContext ctx;
  auto stream = stub()->Inbox(&ctx);
  v1::InboxRequest start;
  start.mutable_start()->set_follow(options.follow);
  start.mutable_start()->set_ack(options.ack);
  start.mutable_start()->set_window(options.window);
  start.mutable_start()->set_purpose(options.purpose.empty() ? options_.purpose : options.purpose);
  if (!stream->Write(start)) return Checked(stream->Finish());
  // Acks go in groups (one commit at the node per group): flushed every `group` items, at each
  // catch-up, and at the end. A group is at most half the window so the stream never stalls.
  const uint32_t window = options.window == 0 ? 256 : options.window;
  const int group = static_cast<int>(std::max<uint32_t>(1, std::min<uint32_t>(64, window / 2)));
  v1::InboxRequest acks;
  auto flush = [&] {
    if (acks.ack().inbox_seqs_size() == 0) return true;
    bool ok = stream->Write(acks);
    acks.Clear();
    return ok;
  };
  v1::InboxResponse resp;
  bool stopped = false;
  while (stream->Read(&resp)) {
    if (resp.has_caught_up()) {
      if (options.ack && !flush()) break;
      if (!options.follow) break;
      continue;
    }
    const uint64_t seq = resp.item().inbox_seq();
    if (handed != nullptr && handed->new_stream) {
      handed->new_stream = false;
      handed->FirstOfStream(seq);
    }
    if (handed != nullptr && handed->Contains(seq)) {
      // Handed over on the other node's stream, its ack not committed: acknowledged here only.
    } else if (!on_item(resp.item())) {
      stopped = true;
      break;
    } else if (handed != nullptr) {
      handed->Add(seq);
    }
    if (options.ack) {
      acks.mutable_ack()->add_inbox_seqs(resp.item().inbox_seq());
      if (acks.ack().inbox_seqs_size() >= group && !flush()) break;
    }
  }
  if (options.ack) flush();
  stream->WritesDone();
  if (stopped) {
    // The node commits the acks written so far and ends the stream once it sees the
    // half-close; what it sent meanwhile is dropped here, unacknowledged, and comes again.
    while (stream->Read(&resp)) {
    }
  }
  // Without follow the server finishes after our half-close, once our acks are committed.
  return Checked(stream->Finish());
}

}  // namespace caseway::client
