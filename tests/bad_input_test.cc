// Bad input to a real node: each case gets a specific status code and message, and nothing is
// stored (checked in the node's SQLite file).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "caseway/v1/exchange_log.grpc.pb.h"
#include "common/grpc_status.h"
#include "common/refusal.h"
#include "common/tls.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    a_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), "360102");
    b_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), "440305");
    a_->AddPeer(*b_);  // B never runs: A validates and stores on its own
    a_->set_extra_yaml("limits:\n  max_message_bytes: 65536\n  max_batch_notices: 10\n");
    ASSERT_OK(a_->Start());
    client_ = a_->NewClient();
  }

  void ExpectNothingStored() {
    EXPECT_EQ(a_->Published(), 0);
    // No channel holds anything, to the peer or to any destination a bad notice named.
    auto status = client_->Status();
    ASSERT_TRUE(status.ok()) << status.status();
    for (const auto& c : status->channels()) EXPECT_EQ(c.head(), 0u) << c.destination();
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::unique_ptr<NodeProcess> a_, b_;
  std::unique_ptr<client::Client> client_;
};

TEST_F(BadInputTest, MissingRequiredFieldsAreNamed) {
  v1::Notice n = SampleNotice("m-1", {"440305"});
  n.clear_subject();
  EXPECT_THAT(client_->Publish(n), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("notice.subject: required")));
  n = SampleNotice("m-2", {"440305"});
  n.mutable_residence_change()->clear_effective_date();
  EXPECT_THAT(client_->Publish(n),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notice.residence_change.effective_date: required")));
  n = SampleNotice("m-3", {"440305"});
  n.clear_body();
  EXPECT_THAT(client_->Publish(n), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("notice.body: exactly one kind")));
  EXPECT_THAT(client_->Publish(v1::Notice()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("notice.notice_id: required")));
  ExpectNothingStored();
}

TEST_F(BadInputTest, UnspecifiedEnumsAreRefused) {
  v1::Notice n = SampleNotice("e-1", {"440305"});
  n.set_priority(v1::PRIORITY_UNSPECIFIED);
  EXPECT_THAT(client_->Publish(n),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notice.priority: required (must not be *_UNSPECIFIED)")));
  n = SampleNotice("e-2", {"440305"});
  n.mutable_residence_change()->set_direction(v1::ResidenceChange::DIRECTION_UNSPECIFIED);
  EXPECT_THAT(client_->Publish(n), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("notice.residence_change.direction")));
  ExpectNothingStored();
}

TEST_F(BadInputTest, UnknownDestinationIsRefused) {
  EXPECT_THAT(client_->Publish(SampleNotice("d-1", {"110101"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notice.destinations[0]: 110101 is not a peer of this node")));
  EXPECT_THAT(client_->Publish(SampleNotice("d-2", {"440305", "99"})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("notice.destinations[1]")));
  ExpectNothingStored();
}

TEST_F(BadInputTest, OriginOtherThanTheNodeIsRefused) {
  v1::Notice n = SampleNotice("o-1", {"440305"});
  n.set_origin("440305");
  EXPECT_THAT(client_->Publish(n),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("notice.origin")));
  ExpectNothingStored();
}

TEST_F(BadInputTest, UnknownFieldsAreRefusedNotForwarded) {
  v1::Notice n = SampleNotice("u-1", {"440305"});
  n.mutable_subject()->GetReflection()->MutableUnknownFields(n.mutable_subject())->AddVarint(99, 1);
  EXPECT_THAT(client_->Publish(n),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notice.subject: unknown field")));
  v1::Notice top = SampleNotice("u-2", {"440305"});
  top.GetReflection()->MutableUnknownFields(&top)->AddLengthDelimited(98, "x");
  EXPECT_THAT(client_->Publish(top),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("notice: unknown field")));
  // In a batch, under a message field of a later notice: its index and the whole path.
  std::vector<v1::Notice> batch;
  for (int i = 0; i < 3; ++i) batch.push_back(SampleNotice("u-b" + std::to_string(i), {"440305"}));
  google::protobuf::Message* occurred = batch[2].mutable_occurred_at();
  occurred->GetReflection()->MutableUnknownFields(occurred)->AddVarint(7, 1);
  EXPECT_THAT(client_->PublishBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notices[2].occurred_at: unknown field")));
  ExpectNothingStored();
}

TEST_F(BadInputTest, OversizedMessageIsResourceExhausted) {
  v1::Notice n = SampleNotice("big-1", {"440305"});
  n.mutable_residence_change()->set_residence_address(std::string(100000, 'x'));
  EXPECT_THAT(client_->Publish(n), StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  ExpectNothingStored();
}

TEST_F(BadInputTest, OverlongBatchIsResourceExhausted) {
  std::vector<v1::Notice> batch;
  for (int i = 0; i < 11; ++i) batch.push_back(SampleNotice("b-" + std::to_string(i), {"440305"}));
  EXPECT_THAT(client_->PublishBatch(batch),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("at most 10 per batch")));
  ExpectNothingStored();
}

TEST_F(BadInputTest, OneInvalidNoticeRefusesTheWholeBatch) {
  std::vector<v1::Notice> batch;
  for (int i = 0; i < 5; ++i) batch.push_back(SampleNotice("v-" + std::to_string(i), {"440305"}));
  batch[3].mutable_subject()->set_id_number("12345");
  EXPECT_THAT(client_->PublishBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notices[3].subject.id_number: 18 characters expected")));
  batch[3] = batch[1];  // the same id twice in one batch
  EXPECT_THAT(client_->PublishBatch(batch),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notices[3].notice_id: appears more than once")));
  ExpectNothingStored();
}

TEST_F(BadInputTest, EveryBadFieldOfEveryNoticeIsNamedInTheTypedDetails) {
  std::vector<v1::Notice> batch;
  for (int i = 0; i < 5; ++i) batch.push_back(SampleNotice("t-" + std::to_string(i), {"440305"}));
  batch[1].mutable_subject()->set_id_number("12345");
  batch[1].set_case_id("");
  batch[3].set_destinations(0, "440306");  // a valid code, not a peer
  batch[4].set_notice_id("t-0");
  auto refused = client_->PublishBatch(batch);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  // The message: the first violation, and how many more the details hold.
  EXPECT_EQ(refused.status().message(),
            "notices[1].case_id: required (and 3 more: see the BadRequest details)");
  EXPECT_EQ(common::ReasonOf(refused.status()), "INVALID_NOTICE");
  std::vector<std::string> fields;
  for (const auto& v : common::ViolationsOf(refused.status())) fields.push_back(v.field);
  EXPECT_EQ(fields, (std::vector<std::string>{"notices[1].case_id", "notices[1].subject.id_number",
                                              "notices[3].destinations[0]",
                                              "notices[4].notice_id"}));
  EXPECT_EQ(common::ViolationsOf(refused.status())[2].description,
            "440306 is not a peer of this node");
  ExpectNothingStored();
  // The same rule, the same words, from Publish: only the path differs.
  auto one = client_->Publish(batch[3]);
  EXPECT_EQ(one.status().message(), "notice.destinations[0]: 440306 is not a peer of this node");
  EXPECT_EQ(common::ReasonOf(one.status()), "NOT_A_PEER");
  ASSERT_EQ(common::ViolationsOf(one.status()).size(), 1u);
  EXPECT_EQ(common::ViolationsOf(one.status())[0].field, "notice.destinations[0]");
  ExpectNothingStored();
}

TEST_F(BadInputTest, SameIdWithOtherContentIsAlreadyExistsAndBatchStoresNothing) {
  ASSERT_OK(client_->Publish(SampleNotice("x-1", {"440305"})));
  v1::Notice other = SampleNotice("x-1", {"440305"});
  other.set_case_id("different");
  // A retry must be identical; the refusal says so, and how to change a stored notice instead.
  auto single = client_->Publish(other);
  EXPECT_THAT(single, StatusIs(absl::StatusCode::kAlreadyExists,
                               HasSubstr("notice.notice_id: x-1 is already stored with other "
                                         "content. A retry must resend the identical notice")));
  EXPECT_EQ(common::ReasonOf(single.status()), "CONTENT_CONFLICT");
  auto batch = client_->PublishBatch({SampleNotice("x-2", {"440305"}), other});
  EXPECT_THAT(batch, StatusIs(absl::StatusCode::kAlreadyExists,
                              HasSubstr("notices[1].notice_id: x-1 is already stored with other "
                                        "content. A retry must resend the identical notice")));
  EXPECT_EQ(common::ReasonOf(batch.status()), "CONTENT_CONFLICT");
  EXPECT_EQ(a_->Published(), 1);
  EXPECT_EQ(a_->Head("440305"), 1);
}

TEST_F(BadInputTest, CliReportsMalformedJsonAndUnknownKindsByLineAndStoresTheRest) {
  std::string input =
      ToJsonLine(SampleNotice("cli-1", {"440305"})) + "\n" +
      "{\"notice_id\": \"cli-2\", \n" +                                  // malformed JSON
      "{\"notice_id\": \"cli-3\", \"marriage_registration\": {}}\n" +    // unknown kind
      "{\"notice_id\": \"cli-4\", \"priority\": \"PRIORITY_URGENT\"}\n" +  // unknown enum name
      ToJsonLine(SampleNotice("cli-5", {"440305"})) + "\n";
  std::vector<std::string> argv = {BinDir() + "/caseway", "publish", "-"};
  for (auto& f : a_->CliFlags()) argv.push_back(f);
  RunResult r = RunCommand(argv, input);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr("{\"line\":2,\"status\":\"INVALID_ARGUMENT\""));
  EXPECT_THAT(r.out, HasSubstr("line 2: not a caseway.v1.Notice in protobuf JSON"));
  EXPECT_THAT(r.out, HasSubstr("{\"line\":3,\"status\":\"INVALID_ARGUMENT\""));
  EXPECT_THAT(r.out, HasSubstr("marriage_registration"));
  EXPECT_THAT(r.out, HasSubstr("{\"line\":4,\"status\":\"INVALID_ARGUMENT\""));
  EXPECT_THAT(r.out, HasSubstr("{\"line\":1,\"status\":\"OK\",\"notice_id\":\"cli-1\""));
  EXPECT_THAT(r.out, HasSubstr("{\"line\":5,\"status\":\"OK\",\"notice_id\":\"cli-5\""));
  EXPECT_THAT(r.err, HasSubstr("2 published, 3 failed"));
  EXPECT_EQ(a_->Published(), 2);
}

TEST_F(BadInputTest, CliBatchIsolatesTheInvalidLine) {
  std::string input;
  for (int i = 1; i <= 6; ++i) {
    v1::Notice n = SampleNotice("iso-" + std::to_string(i), {"440305"});
    if (i == 4) n.set_priority(v1::PRIORITY_UNSPECIFIED);
    input += ToJsonLine(n) + "\n";
  }
  std::vector<std::string> argv = {BinDir() + "/caseway", "publish", "--batch", "10", "-"};
  for (auto& f : a_->CliFlags()) argv.push_back(f);
  RunResult r = RunCommand(argv, input);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("{\"line\":4,\"status\":\"INVALID_ARGUMENT\",\"notice_id\":\"iso-4\","
                               "\"error\":\"notice.priority: required"));
  EXPECT_EQ(a_->Published(), 5);
}

TEST_F(BadInputTest, CliDryRunNamesEveryBadLineAndStoresNothing) {
  ASSERT_OK(client_->Publish(SampleNotice("dry-stored", {"440305"})));
  std::string input;
  for (int i = 1; i <= 6; ++i) {
    v1::Notice n = SampleNotice("dry-" + std::to_string(i), {"440305"});
    if (i == 2) n.set_priority(v1::PRIORITY_UNSPECIFIED);
    if (i == 5) {
      n.mutable_subject()->set_id_number("12345");
      n.set_case_id("");
    }
    input += ToJsonLine(n) + "\n";
  }
  input += ToJsonLine(SampleNotice("dry-stored", {"440305"})) + "\n";  // already stored, identical
  std::vector<std::string> argv = {BinDir() + "/caseway", "publish", "--dry-run", "--batch", "10", "-"};
  for (auto& f : a_->CliFlags()) argv.push_back(f);
  RunResult r = RunCommand(argv, input);
  EXPECT_EQ(r.exit_code, 1);
  // Both bad lines of the one batch are named, each with all of its fields.
  EXPECT_THAT(r.out, HasSubstr("{\"line\":2,\"status\":\"INVALID_ARGUMENT\",\"notice_id\":\"dry-2\","
                               "\"error\":\"notice.priority: required"));
  EXPECT_THAT(r.out, HasSubstr("{\"line\":5,\"status\":\"INVALID_ARGUMENT\",\"notice_id\":\"dry-5\","
                               "\"error\":\"notice.case_id: required; notice.subject.id_number: "));
  EXPECT_THAT(r.out, HasSubstr("{\"line\":7,\"status\":\"OK\",\"notice_id\":\"dry-stored\",\"duplicate\":true"));
  EXPECT_THAT(r.err, HasSubstr("dry run: 5 valid, 2 failed (nothing stored)"));
  // One notice at a time (--batch 1): all of its bad fields too.
  argv[4] = "1";
  RunResult unary = RunCommand(argv, input);
  EXPECT_THAT(unary.out, HasSubstr("{\"line\":5,\"status\":\"INVALID_ARGUMENT\",\"notice_id\":\"dry-5\","
                                   "\"error\":\"notice.case_id: required; notice.subject.id_number: "));
  EXPECT_EQ(a_->Published(), 1) << "only the notice stored before";
  EXPECT_EQ(a_->Head("440305"), 1);
  // Another content under a stored id is found too.
  v1::Notice other = SampleNotice("dry-stored", {"440305"});
  other.set_case_id("changed");
  auto conflict = client_->Publish(other, /*validate_only=*/true);
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(common::ReasonOf(conflict.status()), "CONTENT_CONFLICT");
}

// Refusals other than bad arguments carry an ErrorInfo too: the default reason is the code's name,
// whether the refusal comes from a handler, the log service or a stream.
TEST_F(BadInputTest, EveryRefusalCarriesAReason) {
  // An ack of an inbox entry that does not exist (a stream's refusal).
  {
    auto stub = client_->stub();
    grpc::ClientContext ctx;
    auto stream = stub->Inbox(&ctx);
    v1::InboxRequest start;
    start.mutable_start()->set_ack(true);
    start.mutable_start()->set_purpose(kTestPurpose);
    ASSERT_TRUE(stream->Write(start));
    v1::InboxRequest ack;
    ack.mutable_ack()->add_inbox_seqs(4242);
    ASSERT_TRUE(stream->Write(ack));
    stream->WritesDone();
    v1::InboxResponse resp;
    while (stream->Read(&resp)) {
    }
    absl::Status s = common::FromGrpcStatus(stream->Finish());
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
    EXPECT_EQ(common::ReasonOf(s), "NOT_FOUND") << s;
  }
  // The exchange log's: a checkpoint of a size never signed, as an auditor.
  const std::string auditor = pki_->Auditor("alice");
  auto creds = common::ChannelCredentials({pki_->ca(), auditor + ".crt", auditor + ".key"});
  ASSERT_OK(creds);
  auto log = v1::ExchangeLog::NewStub(grpc::CreateChannel(a_->address(), *creds));
  {
    grpc::ClientContext ctx;
    v1::GetCheckpointRequest req;
    req.set_size(987654);
    v1::CheckpointResponse resp;
    absl::Status s = common::FromGrpcStatus(log->GetCheckpoint(&ctx, req, &resp));
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
    EXPECT_EQ(common::ReasonOf(s), "NOT_FOUND") << s;
  }
  {
    grpc::ClientContext ctx;
    v1::GetEvidenceRequest req;
    req.set_peer("440305");
    v1::GetEvidenceResponse resp;
    absl::Status s = common::FromGrpcStatus(log->GetEvidence(&ctx, req, &resp));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_EQ(common::ReasonOf(s), "INVALID_REQUEST") << s;
    ASSERT_EQ(common::ViolationsOf(s).size(), 1u) << s;
    EXPECT_EQ(common::ViolationsOf(s)[0].field, "direction");
  }
}

}  // namespace
}  // namespace caseway::testing
