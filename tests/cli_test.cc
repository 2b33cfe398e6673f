// The `caseway` CLI against real nodes: publish every notice kind from the sample files, read the
// inbox as JSON lines, ack, status, client config files and --help.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "absl/strings/str_split.h"
#include "common/policy.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    for (const char* j : {"360102", "360111", "440305"}) {
      nodes_[j] = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), j);
    }
    for (auto& [j, n] : nodes_) {
      for (auto& [k, p] : nodes_) {
        if (j != k) n->AddPeer(*p);
      }
    }
    for (auto& [j, n] : nodes_) ASSERT_OK(n->Start());
  }

  RunResult Cli(const std::string& node, std::vector<std::string> args,
                const std::string& input = "") {
    std::vector<std::string> argv = {BinDir() + "/caseway"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (auto& f : nodes_.at(node)->CliFlags()) argv.push_back(f);
    return RunCommand(argv, input);
  }

  static std::vector<std::string> Lines(const std::string& s) {
    std::vector<std::string> out = absl::StrSplit(s, '\n', absl::SkipEmpty());
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(CliTest, PublishesEveryKindAndTheDestinationsInboxPrintsThemOnce) {
  std::string samples = SourceDir() + "/deploy/samples/notices-360102.jsonl";
  RunResult pub = Cli("360102", {"publish", samples});
  ASSERT_EQ(pub.exit_code, 0) << pub.out << pub.err;
  std::vector<std::string> results = Lines(pub.out);
  ASSERT_EQ(results.size(), 12u);
  for (const auto& line : results) EXPECT_THAT(line, HasSubstr("\"status\":\"OK\""));
  EXPECT_THAT(pub.err, HasSubstr("12 published, 0 failed"));
  // The feedback answers 440305's verification request, which 360102 must have received first.
  RunResult refused = Cli("360102", {"publish", SourceDir() + "/deploy/samples/replies-360102.jsonl"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.out, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(refused.out, HasSubstr("notice.in_reply_to: no notice \\\"sz-2026-verification-1\\\" was "
                                     "received from a peer (a feedback answers a received notice)"));
  ASSERT_EQ(Cli("440305", {"publish", SourceDir() + "/deploy/samples/notices-440305.jsonl"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return nodes_["360102"]->InboxTotal() == 1; },
                      absl::Seconds(15)));
  RunResult reply = Cli("360102", {"publish", SourceDir() + "/deploy/samples/replies-360102.jsonl"});
  ASSERT_EQ(reply.exit_code, 0) << reply.out << reply.err;

  // 440305 receives all 13; 360111 only the departure addressed to both.
  ASSERT_TRUE(WaitFor([&] { return nodes_["440305"]->InboxTotal() == 13; },
                      absl::Seconds(15)));
  RunResult inbox = Cli("440305", {"inbox", "--ack"});
  ASSERT_EQ(inbox.exit_code, 0) << inbox.err;
  std::vector<std::string> items = Lines(inbox.out);
  ASSERT_EQ(items.size(), 13u);
  std::set<int> kinds;
  for (const auto& line : items) {
    v1::InboxItem item;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &item).ok()) << line;
    EXPECT_EQ(item.origin(), "360102");
    kinds.insert(item.notice().body_case());
  }
  EXPECT_EQ(kinds.size(), 12u) << "every notice kind arrived";
  EXPECT_TRUE(Lines(Cli("440305", {"inbox"}).out).empty()) << "acked notices are not printed again";

  // 360111: the departure addressed to it too, and 440305's arrival registration.
  ASSERT_TRUE(WaitFor([&] { return nodes_["360111"]->InboxTotal() == 2; },
                      absl::Seconds(15)));
  RunResult peek = Cli("360111", {"inbox"});
  EXPECT_EQ(Lines(peek.out).size(), 2u);
  EXPECT_EQ(Lines(Cli("360111", {"inbox"}).out).size(), 2u) << "without --ack nothing is consumed";

  // Republishing the file is idempotent: every line reports a duplicate.
  RunResult again = Cli("360102", {"publish", "--batch", "5", samples});
  EXPECT_EQ(again.exit_code, 0);
  for (const auto& line : Lines(again.out)) EXPECT_THAT(line, HasSubstr("\"duplicate\":true"));
}

TEST_F(CliTest, ParallelPublishKeepsResultsInInputOrder) {
  std::string input;
  for (int i = 1; i <= 60; ++i) {
    v1::Notice n = SampleNotice("par-" + std::to_string(i), {"440305"});
    if (i == 17 || i == 44) n.set_priority(v1::PRIORITY_UNSPECIFIED);
    input += ToJsonLine(n) + "\n";
    if (i == 30) input += "\n";  // a blank line settles without output
    if (i == 50) input += "{\"noticeId\": \"broken\",\n";  // not JSON: parsed by a sender
  }
  RunResult r = Cli("360102", {"publish", "--jobs", "4", "--batch", "5", "-"}, input);
  EXPECT_EQ(r.exit_code, 1);
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 61u);
  int expected = 1;
  for (const auto& l : lines) {
    EXPECT_THAT(l, HasSubstr("{\"line\":" + std::to_string(expected) + ","));
    expected += expected == 30 ? 2 : 1;
  }
  EXPECT_THAT(lines[16], HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(lines[50], HasSubstr("not a caseway.v1.Notice in protobuf JSON"));
  EXPECT_THAT(r.err, HasSubstr("58 published, 3 failed"));
  EXPECT_EQ(nodes_["360102"]->Published(), 58);
}

// Length-delimited binary records (--format binpb): the bulk-load input. Each record is
// reported by its number; a record that is not a notice and a record cut short are named.
TEST_F(CliTest, PublishesBinaryDelimitedRecordsAndNamesABrokenOne) {
  auto delimited = [](const std::string& bytes) {
    std::string out;
    for (uint64_t n = bytes.size(); ; n >>= 7) {  // the length as a base-128 varint
      out.push_back(static_cast<char>((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)));
      if (n < 0x80) break;
    }
    return out + bytes;
  };
  std::string input;
  for (int i = 1; i <= 40; ++i) {
    v1::Notice n = SampleNotice("bin-" + std::to_string(i), {"440305"});
    if (i == 9) n.set_priority(v1::PRIORITY_UNSPECIFIED);
    input += i == 23 ? delimited("\xff\xff\xff") : delimited(n.SerializeAsString());
  }
  std::string whole = input + delimited(SampleNotice("bin-41", {"440305"}).SerializeAsString());
  RunResult r = Cli("360102", {"publish", "--format", "binpb", "--jobs", "3", "--batch", "7", "-"},
                    whole);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 41u) << r.out;
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_THAT(lines[i], HasSubstr("{\"line\":" + std::to_string(i + 1) + ","));
  }
  EXPECT_THAT(lines[8], HasSubstr("notice.priority"));
  EXPECT_THAT(lines[22], HasSubstr("record 23: not a caseway.v1.Notice in binary protobuf"));
  EXPECT_THAT(r.err, HasSubstr("39 published, 2 failed"));
  EXPECT_EQ(nodes_["360102"]->Published(), 39);

  // Cut inside the last record: the records before it are published (again: duplicates), and
  // the cut one is named with what is missing.
  std::string cut = input + delimited(SampleNotice("bin-42", {"440305"}).SerializeAsString());
  cut.resize(cut.size() - 5);
  RunResult c = Cli("360102", {"publish", "--format", "binpb", "-"}, cut);
  EXPECT_EQ(c.exit_code, 1);
  lines = Lines(c.out);
  ASSERT_EQ(lines.size(), 41u) << c.out;
  EXPECT_THAT(lines[0], HasSubstr("\"duplicate\":true"));
  EXPECT_THAT(lines[40], HasSubstr("record 41: the input ends after"));
  EXPECT_THAT(c.err, HasSubstr("record 41: the input ends after"));
  EXPECT_EQ(nodes_["360102"]->Published(), 39);
}

TEST_F(CliTest, StatusShowsChannelsSubscriptionsAndInbox) {
  RunResult pub = Cli("440305", {"publish", SourceDir() + "/deploy/samples/notices-440305.jsonl"});
  ASSERT_EQ(pub.exit_code, 0) << pub.out << pub.err;
  ASSERT_TRUE(WaitFor([&] { return nodes_["360102"]->InboxTotal() == 1; },
                      absl::Seconds(15)));
  RunResult status = Cli("440305", {"status"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("node 440305"));
  EXPECT_THAT(status.out, HasSubstr("CHANNEL TO"));
  EXPECT_THAT(status.out, HasSubstr("SUBSCRIBED TO"));
  RunResult json = Cli("440305", {"status", "--json"});
  v1::StatusResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok()) << json.out;
  int channels_with_one = 0;
  for (const auto& c : parsed.channels()) channels_with_one += c.head() == 1;
  EXPECT_EQ(channels_with_one, 2) << json.out;
  EXPECT_EQ(parsed.subscriptions_size(), 2);
}

TEST_F(CliTest, ClientConfigFileSuppliesTheConnection) {
  std::string prefix = pki_->Client("360102", "office");
  std::string path = dir_.path() + "/client.yaml";
  std::ofstream(path) << "address: " << nodes_["360102"]->address() << "\nca_file: " << pki_->ca()
                      << "\ncert_file: " << prefix << ".crt\nkey_file: " << prefix << ".key\n";
  RunResult r = RunCommand({BinDir() + "/caseway", "status", "--client-config", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("node 360102"));

  std::ofstream(path) << "address: x\nca: y\n";
  r = RunCommand({BinDir() + "/caseway", "status", "--client-config", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(path + ": ca: unknown key"));

  r = RunCommand({BinDir() + "/caseway", "status"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--address: required"));
}

TEST_F(CliTest, EveryCommandHasHelp) {
  for (std::vector<std::string> args : {std::vector<std::string>{"--help"},
                                        {"publish", "--help"},
                                        {"inbox", "--help"},
                                        {"status", "--help"},
                                        {"todo", "--help"},
                                        {"query", "--help"},
                                        {"case", "--help"},
                                        {"conformance", "--help"},
                                        {"audit", "--help"},
                                        {"audit", "access", "--help"}}) {
    args.insert(args.begin(), BinDir() + "/caseway");
    RunResult r = RunCommand(args);
    EXPECT_EQ(r.exit_code, 0) << args[1];
    EXPECT_THAT(r.out, HasSubstr("Usage")) << args[1];
  }
  RunResult pki = RunCommand({"/bin/bash", SourceDir() + "/deploy/pki.sh", "--help"});
  EXPECT_EQ(pki.exit_code, 0);
  EXPECT_THAT(pki.out, HasSubstr("pki.sh init"));
}

// The integrators' guide shows one example per notice kind: each must be one of the sample
// notices that the test above publishes to real nodes (so no example in the guide is invalid).
TEST(IntegratorsGuideTest, TheIntegratorsGuideShowsTheSamplesThatArePublished) {
  auto parse = [](const std::string& json) {
    v1::Notice n;
    auto s = google::protobuf::util::JsonStringToMessage(json, &n);
    EXPECT_TRUE(s.ok()) << s.ToString() << "\n" << json;
    return n;
  };
  std::vector<v1::Notice> samples;
  for (const char* f : {"notices-360102.jsonl", "notices-440305.jsonl", "replies-360102.jsonl",
                        "replies-440305.jsonl"}) {
    std::ifstream in(SourceDir() + "/deploy/samples/" + f);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) samples.push_back(parse(line));
    }
  }
  std::ifstream doc(SourceDir() + "/docs/integrators.md");
  std::set<std::string> kinds;
  std::string block;
  bool in_block = false;
  for (std::string line; std::getline(doc, line);) {
    if (line == "```json") {
      in_block = true;
      block.clear();
    } else if (in_block && line == "```") {
      in_block = false;
      v1::Notice n = parse(block);
      const std::string kind = common::NoticeKind(n);
      ASSERT_FALSE(kind.empty()) << block;
      kinds.insert(kind);
      EXPECT_TRUE(std::any_of(samples.begin(), samples.end(), [&](const v1::Notice& s) {
        return google::protobuf::util::MessageDifferencer::Equals(s, n);
      })) << "not a published sample: " << n.notice_id();
    } else if (in_block) {
      block += line + "\n";
    }
  }
  EXPECT_EQ(kinds.size(), 12u) << "one example per notice kind";
}

}  // namespace
}  // namespace caseway::testing
