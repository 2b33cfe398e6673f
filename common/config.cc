#include "common/config.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace caseway::common {
namespace {

using ::caseway::v1::NodeConfig;
using ::google::protobuf::Duration;
using ::google::protobuf::util::TimeUtil;

// EmitJson writes `node` as JSON. With `field` (the proto field the node maps onto) scalars take
// the field's type: string fields stay strings even when they look like numbers (region codes),
// Duration fields accept "250ms"/"5s"/"2m"/"1h". Without it scalars are inferred.
void EmitJson(const YAML::Node& node, const google::protobuf::FieldDescriptor* field,
              const google::protobuf::Descriptor* message, std::string& out);

void EmitScalar(const YAML::Node& node, const google::protobuf::FieldDescriptor* field,
                std::string& out) {
  using google::protobuf::FieldDescriptor;
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kFloat("[-+]?([0-9]+\\.[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?");
  static const std::regex kDuration("([0-9]+(?:\\.[0-9]+)?)(ms|s|m|h)");
  const std::string& v = node.Scalar();
  const bool quoted = node.Tag() == "!";
  if (field != nullptr && (field->type() == FieldDescriptor::TYPE_STRING ||
                           field->type() == FieldDescriptor::TYPE_BYTES ||
                           field->type() == FieldDescriptor::TYPE_ENUM)) {
    return AppendJsonString(v, out);
  }
  std::smatch m;
  static const std::regex kDate("([0-9]{4})-([0-9]{2})-([0-9]{2})");
  if (field != nullptr && field->message_type() != nullptr &&
      field->message_type()->full_name() == "caseway.v1.Date" && std::regex_match(v, m, kDate)) {
    // "2026-10-01" for a caseway.v1.Date (range checks are the validator's).
    out += absl::StrFormat("{\"year\":%d,\"month\":%d,\"day\":%d}", std::stoi(m[1]),
                           std::stoi(m[2]), std::stoi(m[3]));
    return;
  }
  if (!quoted && field != nullptr && field->message_type() != nullptr &&
      field->message_type()->full_name() == "google.protobuf.Duration" &&
      std::regex_match(v, m, kDuration)) {
    double unit = m[2] == "ms" ? 0.001 : m[2] == "s" ? 1 : m[2] == "m" ? 60 : 3600;
    out += absl::StrFormat("\"%.9fs\"", std::stod(m[1]) * unit);
  } else if (quoted) {
    AppendJsonString(v, out);
  } else if (v == "true" || v == "false") {
    out += v;
  } else if (v == "null" || v == "~") {
    out += "null";
  } else if (std::regex_match(v, kInt) || std::regex_match(v, kFloat)) {
    out += v[0] == '+' ? v.substr(1) : v;
  } else {
    AppendJsonString(v, out);
  }
}

void EmitJson(const YAML::Node& node, const google::protobuf::FieldDescriptor* field,
              const google::protobuf::Descriptor* message, std::string& out) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      out += "null";
      return;
    case YAML::NodeType::Scalar:
      EmitScalar(node, field, out);
      return;
    case YAML::NodeType::Sequence: {
      out.push_back('[');
      bool first = true;
      for (const auto& item : node) {
        if (!first) out.push_back(',');
        first = false;
        EmitJson(item, field, message, out);  // a repeated field's elements share its type
      }
      out.push_back(']');
      return;
    }
    case YAML::NodeType::Map: {
      const google::protobuf::Descriptor* type =
          field != nullptr ? field->message_type() : message;
      out.push_back('{');
      bool first = true;
      for (const auto& kv : node) {
        if (!first) out.push_back(',');
        first = false;
        if (!kv.first.IsScalar()) {
          throw YAML::Exception(kv.first.Mark(), "a mapping key must be a plain scalar");
        }
        std::string key = kv.first.Scalar();
        const google::protobuf::FieldDescriptor* sub = nullptr;
        if (type != nullptr) {
          sub = type->FindFieldByName(key);
          if (sub == nullptr) sub = type->FindFieldByCamelcaseName(key);
        }
        AppendJsonString(key, out);
        out.push_back(':');
        EmitJson(kv.second, sub, nullptr, out);
      }
      out.push_back('}');
      return;
    }
  }
}

// MaxNoticeBytesBound is the largest notice that fits in a delivery batch with its manifest and
// framing: entries take at most half of max_message_bytes, and 8 KiB is left for the rest.
uint32_t MaxNoticeBytesBound(const ::caseway::v1::LimitsConfig& limits) {
  const uint32_t half = limits.max_message_bytes() / 2;
  return half > (8u << 10) ? half - (8u << 10) : 0;
}

Duration Dur(int64_t millis) { return TimeUtil::MillisecondsToDuration(millis); }

void FillDefaults(NodeConfig& c) {
  auto* st = c.mutable_storage();
  if (st->group_commit_max() == 0) st->set_group_commit_max(4096);
  if (!st->has_purge_interval()) *st->mutable_purge_interval() = Dur(3600000);
  if (st->has_postgres() && !st->postgres().has_lease_ttl()) {
    *st->mutable_postgres()->mutable_lease_ttl() = Dur(6000);
  }
  auto* ex = c.mutable_exchange();
  if (ex->batch_max_entries() == 0) ex->set_batch_max_entries(2048);
  if (ex->window_batches() == 0) ex->set_window_batches(8);
  if (!ex->has_heartbeat_interval()) *ex->mutable_heartbeat_interval() = Dur(1000);
  if (!ex->has_max_clock_offset()) *ex->mutable_max_clock_offset() = Dur(30000);
  if (!ex->has_backoff_initial()) *ex->mutable_backoff_initial() = Dur(200);
  if (!ex->has_backoff_max()) *ex->mutable_backoff_max() = Dur(10000);
  auto* li = c.mutable_limits();
  if (li->max_message_bytes() == 0) li->set_max_message_bytes(4 << 20);
  if (li->max_batch_notices() == 0) li->set_max_batch_notices(1000);
  if (li->peer_queries_per_minute() == 0) li->set_peer_queries_per_minute(120);
  if (li->transport_memory_bytes() == 0) li->set_transport_memory_bytes(uint64_t{512} << 20);
  if (li->max_notice_bytes() == 0) {
    li->set_max_notice_bytes(std::min<uint32_t>(256 << 10, MaxNoticeBytesBound(*li)));
  }
  if (!c.tls().has_crl_reload_interval()) *c.mutable_tls()->mutable_crl_reload_interval() = Dur(10000);
  if (!c.tls().has_reload_interval()) *c.mutable_tls()->mutable_reload_interval() = Dur(10000);
  auto* lg = c.mutable_log();
  if (lg->level().empty()) lg->set_level("info");
  auto* xl = c.mutable_exchange_log();
  if (!xl->has_checkpoint_interval()) *xl->mutable_checkpoint_interval() = Dur(1000);
  if (!xl->has_witness_interval()) *xl->mutable_witness_interval() = Dur(5000);
  if (!xl->has_scrub_rate()) xl->set_scrub_rate(5000);
  if (!xl->has_stale_checkpoint_after()) *xl->mutable_stale_checkpoint_after() = Dur(120000);
  if (!xl->has_witness_checkpoint_interval()) {
    *xl->mutable_witness_checkpoint_interval() = Dur(60000);
  }
}

// Validator reports the first rule broken as `<source>: <field>: <rule>`.
class Validator {
 public:
  explicit Validator(absl::string_view source) : source_(source) {}
  void Fail(absl::string_view field, absl::string_view rule) {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(absl::StrCat(source_, ": ", field, ": ", rule));
    }
  }
  void Required(absl::string_view field, const std::string& v) {
    if (v.empty()) Fail(field, "required");
  }
  void Range(absl::string_view field, int64_t v, int64_t min, int64_t max) {
    if (v < min || v > max) Fail(field, absl::StrCat("must be in ", min, "..", max));
  }
  void DurationRange(absl::string_view field, const Duration& d, int64_t min_ms, int64_t max_ms) {
    int64_t ms = TimeUtil::DurationToMilliseconds(d);
    if (ms < min_ms || ms > max_ms) {
      Fail(field, absl::StrCat("must be in ", min_ms, "ms..", max_ms / 1000, "s"));
    }
  }
  void HostPort(absl::string_view field, const std::string& v) {
    static const std::regex kHostPort("(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}");
    if (v.empty()) return Fail(field, "required");
    if (!std::regex_match(v, kHostPort)) return Fail(field, "host:port expected");
    int port = std::stoi(v.substr(v.rfind(':') + 1));  // at most 5 digits (the regex)
    if (port > 65535) Fail(field, "port must be in 0..65535");
  }
  absl::Status status() const { return status_; }

 private:
  std::string source_;
  absl::Status status_;
};

absl::Status Validate(const NodeConfig& c, absl::string_view source) {
  Validator v(source);
  static const std::regex kDomain("[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*");
  if (c.federation().empty()) {
    v.Fail("federation", "required");
  } else if (c.federation().size() > 253 || !std::regex_match(c.federation(), kDomain)) {
    v.Fail("federation", "a DNS-like name expected (letters, digits, '-' and '.')");
  }
  if (c.jurisdiction().empty()) {
    v.Fail("jurisdiction", "required");
  } else if (auto s = ValidateRegionCode(c.jurisdiction()); !s.ok()) {
    v.Fail("jurisdiction", s.message());
  }
  v.HostPort("listen_address", c.listen_address());
  if (const std::string& metrics = c.metrics().listen_address(); !metrics.empty()) {
    // The metrics endpoint (civetweb) binds an address, it does not look up names.
    static const std::regex kIpPort("([0-9]{1,3}(\\.[0-9]{1,3}){3}|\\[[0-9a-fA-F:.]+\\]):[0-9]{1,5}");
    if (!std::regex_match(metrics, kIpPort)) {
      v.Fail("metrics.listen_address", "an IP address and port expected (127.0.0.1:9464, [::1]:9464)");
    } else {
      v.HostPort("metrics.listen_address", metrics);
    }
  }
  if (!c.has_tls()) v.Fail("tls", "required");
  v.Required("tls.ca_file", c.tls().ca_file());
  v.Required("tls.cert_file", c.tls().cert_file());
  v.Required("tls.key_file", c.tls().key_file());
  if (c.storage().has_postgres()) {
    v.Required("storage.postgres.dsn", c.storage().postgres().dsn());
    if (!c.storage().path().empty()) {
      v.Fail("storage.path", "set storage.path (SQLite) or storage.postgres, not both");
    }
    v.DurationRange("storage.postgres.lease_ttl", c.storage().postgres().lease_ttl(), 2000, 60000);
  } else {
    v.Required("storage.path", c.storage().path());
  }
  v.Range("storage.group_commit_max", c.storage().group_commit_max(), 1, 100000);
  if (c.storage().has_retention()) {
    // The message says it in hours: "1h..100y" reads better than milliseconds here.
    const int64_t ms = TimeUtil::DurationToMilliseconds(c.storage().retention());
    if (ms < 3600000 || ms > int64_t{100} * 365 * 86400000) {
      v.Fail("storage.retention", "must be in 1h..100y (unset keeps personal data forever)");
    }
  }
  v.DurationRange("storage.purge_interval", c.storage().purge_interval(), 1000, 86400000);
  std::set<std::string> seen;
  for (int i = 0; i < c.peers_size(); ++i) {
    const auto& p = c.peers(i);
    std::string f = absl::StrCat("peers[", i, "]");
    if (p.jurisdiction().empty()) {
      v.Fail(f + ".jurisdiction", "required");
    } else if (auto s = ValidateRegionCode(p.jurisdiction()); !s.ok()) {
      v.Fail(f + ".jurisdiction", s.message());
    } else if (p.jurisdiction() == c.jurisdiction()) {
      v.Fail(f + ".jurisdiction", "must not be this node's own jurisdiction");
    } else if (!seen.insert(p.jurisdiction()).second) {
      v.Fail(f + ".jurisdiction", "duplicate peer");
    }
    if (!p.serve_only() || !p.address().empty()) {
      // Several, comma-separated: the peer runs as an active/standby pair.
      for (absl::string_view a : absl::StrSplit(p.address(), ',')) {
        v.HostPort(f + ".address", std::string(absl::StripAsciiWhitespace(a)));
      }
    }
  }
  const auto& ex = c.exchange();
  v.Range("exchange.batch_max_entries", ex.batch_max_entries(), 1, 10000);
  v.Range("exchange.window_batches", ex.window_batches(), 1, 64);
  v.DurationRange("exchange.heartbeat_interval", ex.heartbeat_interval(), 100, 3600000);
  v.DurationRange("exchange.max_clock_offset", ex.max_clock_offset(), 1000, 86400000);
  v.DurationRange("exchange.backoff_initial", ex.backoff_initial(), 10, 3600000);
  v.DurationRange("exchange.backoff_max", ex.backoff_max(),
                  TimeUtil::DurationToMilliseconds(ex.backoff_initial()), 3600000);
  v.DurationRange("tls.crl_reload_interval", c.tls().crl_reload_interval(), 1000, 3600000);
  v.DurationRange("tls.reload_interval", c.tls().reload_interval(), 1000, 3600000);
  v.Range("limits.max_message_bytes", c.limits().max_message_bytes(), 64 << 10, 64 << 20);
  if (v.status().ok()) {
    v.Range("limits.max_notice_bytes", c.limits().max_notice_bytes(), 1024,
            MaxNoticeBytesBound(c.limits()));
  }
  v.Range("limits.max_batch_notices", c.limits().max_batch_notices(), 1, 100000);
  v.Range("limits.peer_queries_per_minute", c.limits().peer_queries_per_minute(), 1, 60000);
  v.Range("limits.transport_memory_bytes", c.limits().transport_memory_bytes(), uint64_t{64} << 20,
          uint64_t{64} << 30);
  const auto& xl = c.exchange_log();
  if (!xl.disabled()) {
    v.Required("exchange_log.signing_key_file", xl.signing_key_file());
    v.Required("exchange_log.directory_file", xl.directory_file());
  }
  v.DurationRange("exchange_log.checkpoint_interval", xl.checkpoint_interval(), 100, 3600000);
  v.DurationRange("exchange_log.witness_interval", xl.witness_interval(), 100, 3600000);
  v.Range("exchange_log.scrub_rate", xl.scrub_rate(), 0, 10000000);
  v.DurationRange("exchange_log.stale_checkpoint_after", xl.stale_checkpoint_after(), 10000,
                  86400000);
  v.DurationRange("exchange_log.witness_checkpoint_interval", xl.witness_checkpoint_interval(),
                  1000, 86400000);
  const std::string& level = c.log().level();
  if (level != "debug" && level != "info" && level != "warn" && level != "error") {
    v.Fail("log.level", "one of debug, info, warn, error");
  }
  return v.status();
}

}  // namespace

absl::Status ParseYamlInto(absl::string_view yaml, absl::string_view source,
                           google::protobuf::Message* out) {
  auto json = YamlToJson(yaml, out->GetDescriptor());
  if (!json.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", json.status().message()));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  if (auto st = google::protobuf::util::JsonStringToMessage(*json, out, options); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", std::string(st.message())));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> YamlToJson(absl::string_view yaml,
                                       const google::protobuf::Descriptor* schema) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("YAML syntax error at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  }
  std::string out;
  try {
    EmitJson(root, nullptr, schema, out);
  } catch (const YAML::Exception& e) {
    // e.g. a mapping key that is itself a mapping or a sequence
    return absl::InvalidArgumentError(absl::StrCat("YAML at line ", e.mark.line + 1, ", column ",
                                                   e.mark.column + 1,
                                                   ": mapping keys must be plain scalars (", e.msg,
                                                   ")"));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("YAML: a value out of range (", e.what(), ")"));
  }
  return out;
}

absl::StatusOr<NodeConfig> ParseNodeConfig(absl::string_view yaml, absl::string_view source) {
  auto json = YamlToJson(yaml, NodeConfig::descriptor());
  if (!json.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", json.status().message()));
  }
  NodeConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(*json, &config, options);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", std::string(st.message())));
  }
  FillDefaults(config);
  RETURN_IF_ERROR(Validate(config, source));
  return config;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<NodeConfig> LoadNodeConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  ASSIGN_OR_RETURN(NodeConfig config, ParseNodeConfig(text, path));
  // Relative file names are relative to the configuration file's directory.
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos) {
    const std::string dir = path.substr(0, slash + 1);
    for (std::string* file : {config.mutable_tls()->mutable_ca_file(),
                              config.mutable_tls()->mutable_cert_file(),
                              config.mutable_tls()->mutable_key_file(),
                              config.mutable_tls()->mutable_crl_dir(),
                              config.mutable_storage()->mutable_path(),
                              config.mutable_storage()->mutable_key_file(),
                              config.mutable_port_file(),
                              config.mutable_exchange_log()->mutable_signing_key_file(),
                              config.mutable_exchange_log()->mutable_directory_file(),
                              config.mutable_policy_file()}) {
      if (!file->empty() && (*file)[0] != '/') *file = dir + *file;
    }
  }
  return config;
}

}  // namespace caseway::common
