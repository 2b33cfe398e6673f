#include "common/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "tests/testing/status_matchers.h"

namespace caseway::common {
namespace {

using ::caseway::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kValid[] = R"(
federation: fed.test
jurisdiction: "360102"
listen_address: 127.0.0.1:7401
tls:
  ca_file: ca.crt
  cert_file: node.crt
  key_file: node.key
storage:
  path: /var/lib/caseway/node.db
peers:
  - jurisdiction: "440305"
    address: node-440305.example.gov:7401
exchange:
  heartbeat_interval: 500ms
  window_batches: 4
exchange_log:
  signing_key_file: node.sign.key
  directory_file: directory.yaml
)";

TEST(ConfigTest, MapsYamlOntoTheProtoAndFillsDefaults) {
  auto c = ParseNodeConfig(kValid, "node.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->federation(), "fed.test");
  EXPECT_EQ(c->jurisdiction(), "360102");
  ASSERT_EQ(c->peers_size(), 1);
  EXPECT_EQ(c->peers(0).address(), "node-440305.example.gov:7401");
  EXPECT_EQ(c->exchange().heartbeat_interval().nanos(), 500'000'000);
  EXPECT_EQ(c->exchange().window_batches(), 4u);
  EXPECT_EQ(c->exchange().batch_max_entries(), 2048u);  // default
  EXPECT_EQ(c->limits().max_message_bytes(), 4u << 20);
  EXPECT_EQ(c->storage().group_commit_max(), 4096u);
}

TEST(ConfigTest, UnquotedRegionCodeIsAcceptedAsAString) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("\"360102\""), 8, "360102");
  auto c = ParseNodeConfig(yaml, "node.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->jurisdiction(), "360102");
}

TEST(ConfigTest, ErrorsNameTheFileTheFieldAndTheRule) {
  struct Case {
    std::string from, to, message;
  };
  const std::vector<Case> cases = {
      {"federation: fed.test", "federation: \"bad name!\"", "node.yaml: federation: a DNS-like"},
      {"jurisdiction: \"360102\"", "jurisdiction: \"3601\"",
       "node.yaml: jurisdiction: region code of 6 or 12 digits expected"},
      {"listen_address: 127.0.0.1:7401", "listen_address: nowhere",
       "node.yaml: listen_address: host:port expected"},
      {"listen_address: 127.0.0.1:7401",
       "listen_address: 127.0.0.1:7401\nmetrics:\n  listen_address: localhost:9464",
       "node.yaml: metrics.listen_address: an IP address and port expected"},
      {"listen_address: 127.0.0.1:7401",
       "listen_address: 127.0.0.1:7401\nmetrics:\n  listen_address: 127.0.0.1:99999",
       "node.yaml: metrics.listen_address: port must be in 0..65535"},
      {"  ca_file: ca.crt\n", "", "node.yaml: tls.ca_file: required"},
      {"  path: /var/lib/caseway/node.db", "  path: \"\"", "node.yaml: storage.path: required"},
      {"  - jurisdiction: \"440305\"", "  - jurisdiction: \"360102\"",
       "node.yaml: peers[0].jurisdiction: must not be this node's own jurisdiction"},
      {"  window_batches: 4", "  window_batches: 65",
       "node.yaml: exchange.window_batches: must be in 1..64"},
      {"  heartbeat_interval: 500ms", "  heartbeat_interval: 5ms",
       "node.yaml: exchange.heartbeat_interval: must be in 100ms"},
      {"  window_batches: 4", "  window_size: 4", "node.yaml: "},  // unknown field
      {"  window_batches: 4", "  window_batches: many", "node.yaml: "},
      {"  signing_key_file: node.sign.key\n", "",
       "node.yaml: exchange_log.signing_key_file: required"},
  };
  for (const Case& c : cases) {
    std::string yaml = kValid;
    size_t at = yaml.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.from;
    yaml.replace(at, c.from.size(), c.to);
    EXPECT_THAT(ParseNodeConfig(yaml, "node.yaml"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.to;
  }
}

TEST(ConfigTest, ServeOnlyPeerNeedsNoAddressOtherPeersDo) {
  std::string yaml = kValid;
  const std::string from = "    address: node-440305.example.gov:7401\n";
  yaml.replace(yaml.find(from), from.size(), "    serve_only: true\n");
  auto c = ParseNodeConfig(yaml, "node.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->peers(0).serve_only());
  EXPECT_EQ(c->peers(0).address(), "");

  yaml = kValid;
  yaml.replace(yaml.find(from), from.size(), "");
  EXPECT_THAT(ParseNodeConfig(yaml, "node.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("node.yaml: peers[0].address: required")));
}

// The store in PostgreSQL instead of a SQLite file (an active/standby pair), and a peer that is
// one: each rule named with its field.
TEST(ConfigTest, PostgresStorageAndAPeerWithTwoAddresses) {
  auto with = [](const std::string& storage, const std::string& address) {
    std::string yaml = kValid;
    const std::string from_storage = "  path: /var/lib/caseway/node.db\n";
    yaml.replace(yaml.find(from_storage), from_storage.size(), storage);
    const std::string from_peer = "node-440305.example.gov:7401";
    yaml.replace(yaml.find(from_peer), from_peer.size(), address);
    return ParseNodeConfig(yaml, "node.yaml");
  };
  auto c = with("  postgres:\n    dsn: \"host=db port=5432 dbname=caseway\"\n", "a:7401, b:7401");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->storage().postgres().dsn(), "host=db port=5432 dbname=caseway");
  EXPECT_EQ(c->storage().postgres().lease_ttl().seconds(), 6);  // the default
  EXPECT_EQ(c->peers(0).address(), "a:7401, b:7401");
  EXPECT_THAT(with("  path: /var/lib/x.db\n  postgres:\n    dsn: \"host=db\"\n", "a:7401"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("storage.path: set storage.path (SQLite) or storage.postgres, "
                                 "not both")));
  EXPECT_THAT(with("  postgres:\n    lease_ttl: 6s\n", "a:7401"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("storage.postgres.dsn: required")));
  EXPECT_THAT(with("  postgres:\n    dsn: \"host=db\"\n    lease_ttl: 1s\n", "a:7401"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("storage.postgres.lease_ttl")));
  EXPECT_THAT(with("  path: /var/lib/x.db\n", "a:7401,not an address"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("peers[0].address: host:port expected")));
}

TEST(ConfigTest, UnknownFieldIsNamed) {
  std::string yaml = std::string(kValid) + "colour: blue\n";
  EXPECT_THAT(ParseNodeConfig(yaml, "node.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("colour")));
}

TEST(ConfigTest, NonScalarKeysAndHugeNumbersAreErrorsNotCrashes) {
  // A mapping key that is itself a sequence or a mapping (once an uncaught exception, exit 134).
  for (const char* yaml : {"? [a, b]\n: 1\n", "limits:\n  ? {x: 1}\n  : 2\n"}) {
    EXPECT_THAT(ParseNodeConfig(yaml, "node.yaml"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("mapping keys must be plain scalars")))
        << yaml;
  }
  std::string yaml = kValid;
  const std::string from = "  heartbeat_interval: 500ms";
  yaml.replace(yaml.find(from), from.size(), "  heartbeat_interval: " + std::string(400, '9') + "s");
  EXPECT_THAT(ParseNodeConfig(yaml, "node.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  yaml = kValid;
  const std::string max_notice = "limits:\n  max_message_bytes: 65536\n  max_notice_bytes: 40000\n";
  EXPECT_THAT(ParseNodeConfig(yaml + max_notice, "node.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("limits.max_notice_bytes: must be in 1024..24576")));
  EXPECT_THAT(ParseNodeConfig(yaml + "limits:\n  transport_memory_bytes: 1000000\n", "node.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("limits.transport_memory_bytes: must be in 67108864..")));
  auto sized = ParseNodeConfig(yaml + "limits:\n  transport_memory_bytes: 1073741824\n", "node.yaml");
  ASSERT_TRUE(sized.ok()) << sized.status();
  EXPECT_EQ(sized->limits().transport_memory_bytes(), uint64_t{1} << 30);
  auto defaulted = ParseNodeConfig(yaml, "node.yaml");
  ASSERT_TRUE(defaulted.ok());
  EXPECT_EQ(defaulted->limits().transport_memory_bytes(), uint64_t{512} << 20);
}

TEST(ConfigTest, YamlSyntaxErrorGivesTheLine) {
  EXPECT_THAT(ParseNodeConfig("federation: [unclosed\n", "node.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("node.yaml: YAML syntax error at line")));
}

TEST(ConfigTest, MissingFileIsNotFound) {
  EXPECT_THAT(LoadNodeConfig("/nonexistent/node.yaml"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/node.yaml")));
}

TEST(ConfigTest, RelativeFilesAreResolvedAgainstTheConfigDirectory) {
  char tmpl[] = "/tmp/caseway-config-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string path = dir + "/node.yaml";
  std::ofstream(path) << kValid << "port_file: run/port\n";
  auto c = LoadNodeConfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tls().ca_file(), dir + "/ca.crt");
  EXPECT_EQ(c->tls().key_file(), dir + "/node.key");
  EXPECT_EQ(c->storage().path(), "/var/lib/caseway/node.db");  // absolute stays
  EXPECT_EQ(c->port_file(), dir + "/run/port");
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

TEST(ConfigTest, YamlToJsonKeepsQuotedScalarsAsStrings) {
  auto json = YamlToJson("a: \"007\"\nb: 7\nc: true\nd: [1, x]\ne: ~\n");
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(*json, R"({"a":"007","b":7,"c":true,"d":[1,"x"],"e":null})");
}

}  // namespace
}  // namespace caseway::common
