#include "server/metrics.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/time_util.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <exception>
#include <map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/log.h"
#include "server/store/notice_store.h"

namespace caseway::server {

namespace {

using common::Log;
using common::LogLevel;
using google::protobuf::util::TimeUtil;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t));
}

// The witness state's first word, from a closed set: its text names peers and sizes.
std::string WitnessStatus(const std::string& state) {
  for (const char* known : {"ok", "unreachable", "halted", "stale", "fork"}) {
    if (absl::StartsWith(state, known)) return known;
  }
  return "refused";
}

// Families built at scrape time: one gauge (or counter) family per name, in a stable order.
class Families {
 public:
  void Add(const std::string& name, const std::string& help, double value,
           std::vector<ClientMetric::Label> labels = {}, MetricType type = MetricType::Gauge) {
    MetricFamily& f = Family(name, help, type);
    ClientMetric m;
    m.label = std::move(labels);
    if (type == MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
  }
  // Declare makes a family appear (with HELP and TYPE) even when it has no series now.
  void Declare(const std::string& name, const std::string& help,
               MetricType type = MetricType::Gauge) {
    Family(name, help, type);
  }
  std::vector<MetricFamily> Take() { return std::move(families_); }

 private:
  MetricFamily& Family(const std::string& name, const std::string& help, MetricType type) {
    auto [it, added] = index_.try_emplace(name, families_.size());
    if (added) families_.push_back(MetricFamily{name, help, type, {}});
    return families_[it->second];
  }
  std::vector<MetricFamily> families_;
  std::map<std::string, size_t> index_;  // name -> position in families_ (a hub adds ~45,000)
};

// Scraped reads the node's state at each scrape.
class Scraped final : public prometheus::Collectable {
 public:
  Scraped(Metrics::SnapshotFn snapshot, NoticeStore* store)
      : snapshot_(std::move(snapshot)), store_(store) {}

  std::vector<MetricFamily> Collect() const override {
    Families out;
    auto status = snapshot_();
    if (!status.ok()) {
      // A scrape that cannot read the store says so; the series below are then absent, which
      // `absent()` alerts see.
      Log(LogLevel::kWarn, "metrics: status not read", {{"status", status.status().ToString()}});
      out.Add("caseway_scrape_errors", "1 when this scrape could not read the node's state", 1);
      return out.Take();
    }
    const absl::Time now = ToTime(status->now());
    auto age = [now](const google::protobuf::Timestamp& t) {
      return std::max(0.0, absl::ToDoubleSeconds(now - ToTime(t)));
    };
    out.Add("caseway_node_info", "the node's jurisdiction and federation policy (always 1)", 1,
            {{"jurisdiction", status->jurisdiction()}, {"policy_version", status->policy_version()}});
    out.Add("caseway_halted", "1 when the node halted on an integrity failure (docs/operator.md)",
            status->halted().empty() ? 0 : 1);
    out.Add("caseway_inbox_notices", "received notices in the inbox", status->inbox_total());
    out.Add("caseway_inbox_unacked", "received notices the local consumer has not taken",
            status->inbox_unacked());
    out.Add("caseway_inbox_oldest_unacked_age_seconds",
            "age of the oldest notice the local consumer has not taken (0 when none)",
            status->has_inbox_oldest_unacked_at() ? age(status->inbox_oldest_unacked_at()) : 0);
    out.Declare("caseway_certificate_expiry_seconds",
                "seconds until the node's TLS certificate expires (negative: expired)");
    if (status->has_certificate_not_after()) {
      out.Add("caseway_certificate_expiry_seconds", "",
              absl::ToDoubleSeconds(ToTime(status->certificate_not_after()) - now));
    }
    out.Declare("caseway_signing_key_expiry_seconds",
                "seconds until the directory stops accepting the node's signing key (negative: "
                "ended; absent: no end)");
    if (status->has_signing_key_not_after()) {
      out.Add("caseway_signing_key_expiry_seconds", "",
              absl::ToDoubleSeconds(ToTime(status->signing_key_not_after()) - now));
    }

    uint64_t streams = 0;
    for (const auto& c : status->channels()) {
      const std::vector<ClientMetric::Label> dest = {{"destination", c.destination()}};
      out.Add("caseway_channel_head", "highest sequence number assigned on the channel",
              c.head(), dest);
      out.Add("caseway_channel_acked", "highest sequence number the destination acknowledged",
              c.acked(), dest);
      out.Add("caseway_channel_lag", "notices the destination has not acknowledged",
              c.head() - std::min(c.head(), c.acked()), dest);
      out.Add("caseway_channel_oldest_unacked_age_seconds",
              "age of the oldest notice the destination has not acknowledged (0 when none)",
              c.has_oldest_unacked_at() ? age(c.oldest_unacked_at()) : 0, dest);
      out.Add("caseway_channel_open_streams", "Subscribe streams open for the channel",
              c.open_streams(), dest);
      streams += c.open_streams();
    }
    out.Add("caseway_open_streams", "Subscribe streams this node serves, all channels", streams);

    out.Declare("caseway_subscription_last_error",
                "1 for the gRPC code of the last failed session while not connected");
    out.Declare("caseway_subscription_batches_refused_total",
                "batches from the peer this node refused since it started, by reason",
                MetricType::Counter);
    out.Declare("caseway_subscription_last_contact_timestamp_seconds",
                "when this node last heard from the peer (unix seconds)");
    out.Declare("caseway_subscription_clock_offset_seconds",
                "the peer's clock minus this node's, from its last heartbeat");
    out.Declare("caseway_witness_status", "1 for the witness's current view of the peer's log");
    for (const auto& s : status->subscriptions()) {
      const std::vector<ClientMetric::Label> origin = {{"origin", s.origin()}};
      out.Add("caseway_subscription_cursor", "highest sequence number stored from the origin",
              s.cursor(), origin);
      out.Add("caseway_subscription_peer_head", "channel head the origin last announced",
              s.peer_head(), origin);
      out.Add("caseway_subscription_lag", "notices announced by the origin and not yet stored",
              s.lag(), origin);
      const bool connected = s.state() == "connected";
      out.Add("caseway_subscription_connected", "1 while the subscription is connected",
              connected ? 1 : 0, origin);
      if (!connected && !s.last_error_code().empty()) {
        out.Add("caseway_subscription_last_error", "", 1,
                {{"origin", s.origin()}, {"code", s.last_error_code()}});
      }
      for (const auto& [reason, count] : s.refused_batches()) {
        out.Add("caseway_subscription_batches_refused_total", "", count,
                {{"origin", s.origin()}, {"reason", reason}}, MetricType::Counter);
      }
      if (s.has_last_contact_at()) {
        out.Add("caseway_subscription_last_contact_timestamp_seconds", "",
                absl::ToDoubleSeconds(ToTime(s.last_contact_at()) - absl::UnixEpoch()), origin);
      }
      if (s.has_clock_offset_ms()) {
        out.Add("caseway_subscription_clock_offset_seconds", "", s.clock_offset_ms() / 1000.0,
                origin);
      }
      out.Add("caseway_subscription_policy_mismatch",
              "1 when the peer runs another federation policy", s.policy_mismatch() ? 1 : 0,
              origin);
      if (!s.witness().empty()) {
        out.Add("caseway_witness_status", "", 1,
                {{"peer", s.origin()}, {"status", WitnessStatus(s.witness())}});
      }
    }

    out.Declare("caseway_todo_overdue", "open to-do items past their due time, per peer and side");
    if (auto overdue = store_->Overdue(common::Now()); overdue.ok()) {
      for (const auto& [peer, counts] : *overdue) {
        out.Add("caseway_todo_overdue", "", counts.first, {{"peer", peer}, {"side", "owed_by_us"}});
        out.Add("caseway_todo_overdue", "", counts.second, {{"peer", peer}, {"side", "owed_to_us"}});
      }
    } else {
      out.Add("caseway_scrape_errors", "1 when this scrape could not read the node's state", 1);
    }

    out.Add("caseway_commit_groups_rerun_total",
            "group transactions run again, with a savepoint per operation, because an operation "
            "failed in them",
            store_->CommitGroupsRerun(), {}, MetricType::Counter);
    const uint64_t log_entries = store_->LogHead().first;
    out.Add("caseway_log_entries", "entries in this node's exchange log", log_entries);
    if (auto checkpoint = store_->LatestCheckpoint(); checkpoint.ok()) {
      out.Add("caseway_checkpoint_entries", "entries covered by the latest signed checkpoint",
              checkpoint->size);
      out.Add("caseway_checkpoint_age_seconds", "age of the latest signed checkpoint",
              std::max(0.0, absl::ToDoubleSeconds(now - checkpoint->created_at)));
    }
    return out.Take();
  }

 private:
  const Metrics::SnapshotFn snapshot_;
  NoticeStore* const store_;
};

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(Metrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->CountRpc(method_, methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  Metrics* const metrics_;
  const std::string method_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(Metrics* metrics) : metrics_(metrics) {
    // Every method of the caseway.v1 services, once (the descriptor pool takes a lock per lookup).
    const auto* pool = google::protobuf::DescriptorPool::generated_pool();
    for (const char* name : {"caseway.v1.Gateway", "caseway.v1.PeerExchange",
                             "caseway.v1.ExchangeLog"}) {
      const auto* service = pool->FindServiceByName(name);
      for (int i = 0; service != nullptr && i < service->method_count(); ++i) {
        known_.insert(absl::StrCat("/", name, "/", service->method(i)->name()));
      }
    }
  }
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // Only our own methods: the label set stays closed (no health or reflection noise). A path
    // that names no method of the caseway.v1 services (the generic service answers any path a
    // client sends) is counted as "unknown", so no client can add series.
    if (info->method() == nullptr || !absl::StartsWith(info->method(), "/caseway.v1.")) {
      return nullptr;
    }
    return new MetricsInterceptor(
        metrics_, known_.contains(info->method()) ? info->method() : "/caseway.v1.unknown");
  }

 private:
  Metrics* const metrics_;
  absl::flat_hash_set<std::string> known_;
};

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {
      "OK",           "CANCELLED",         "UNKNOWN",         "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",    "ALREADY_EXISTS",  "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",         "UNAVAILABLE",     "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(const std::string& listen_address,
                                                        SnapshotFn snapshot, NoticeStore* store) {
  std::unique_ptr<Metrics> m(new Metrics());
  m->registry_ = std::make_shared<prometheus::Registry>();
  m->rpcs_ = &prometheus::BuildCounter()
                  .Name("caseway_rpc_requests_total")
                  .Help("caseway.v1 calls answered, by method and gRPC status code")
                  .Register(*m->registry_);
  const prometheus::Histogram::BucketBoundaries seconds = {
      0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  m->commit_seconds_ = &prometheus::BuildHistogram()
                            .Name("caseway_commit_duration_seconds")
                            .Help("group transactions, from BEGIN to the end of the durable COMMIT")
                            .Register(*m->registry_)
                            .Add({}, seconds);
  m->commit_operations_ = &prometheus::BuildHistogram()
                               .Name("caseway_commit_group_operations")
                               .Help("operations (publish calls, batches, acks) per group commit")
                               .Register(*m->registry_)
                               .Add({}, prometheus::Histogram::BucketBoundaries{
                                            1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024});
  m->commits_failed_ = &prometheus::BuildCounter()
                            .Name("caseway_commits_failed_total")
                            .Help("group transactions that did not commit (their callers got an error)")
                            .Register(*m->registry_)
                            .Add({});
  m->scraped_ = std::make_shared<Scraped>(std::move(snapshot), store);
  try {
    // Civetweb: one listener, two worker threads (Prometheus scrapes one request at a time).
    m->exposer_ = std::make_unique<prometheus::Exposer>(listen_address, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics.listen_address: cannot listen on ", listen_address, ": ", e.what()));
  }
  const std::vector<int> ports = m->exposer_->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(
        absl::StrCat("metrics.listen_address: cannot listen on ", listen_address));
  }
  m->port_ = ports.front();
  m->exposer_->RegisterCollectable(m->registry_);
  m->exposer_->RegisterCollectable(m->scraped_);
  return m;
}

Metrics::~Metrics() { StopServing(); }

void Metrics::StopServing() { exposer_.reset(); }

void Metrics::ObserveCommit(absl::Duration took, size_t operations, bool committed) {
  commit_seconds_->Observe(absl::ToDoubleSeconds(took));
  commit_operations_->Observe(static_cast<double>(operations));
  if (!committed) commits_failed_->Increment();
}

void Metrics::CountRpc(const std::string& method, grpc::StatusCode code) {
  // "/caseway.v1.Gateway/Publish" -> "Gateway/Publish"
  const std::string name = method.substr(std::min(method.size(), sizeof("/caseway.v1.") - 1));
  rpcs_->Add({{"method", name}, {"code", CodeName(code)}}).Increment();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
Metrics::InterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(this);
}

}  // namespace caseway::server
