// The federation directory over key rotations: which key verifies what, by the time the signed
// object states; and what a malformed directory is refused for.
#include "common/directory.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/signing.h"
#include "tests/testing/status_matchers.h"

namespace caseway::common {
namespace {

using ::caseway::testing::StatusIs;
using ::google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

const absl::Time kRotated = absl::FromUnixSeconds(1790000000);  // 2026-09-21

google::protobuf::Timestamp Ts(absl::Time t) {
  return TimeUtil::SecondsToTimestamp(absl::ToUnixSeconds(t));
}

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    proto_.set_federation("fed.test");
    auto* a = proto_.add_nodes();
    a->set_jurisdiction("360102");
    // The old key signs until a day after the rotation (grace); the new one from the rotation.
    auto* k1 = a->add_keys();
    k1->set_public_key(old_->PublicKey());
    *k1->mutable_valid_until() = Ts(kRotated + absl::Hours(24));
    auto* k2 = a->add_keys();
    k2->set_public_key(new_->PublicKey());
    *k2->mutable_valid_from() = Ts(kRotated);
    auto* b = proto_.add_nodes();
    b->set_jurisdiction("440305");
    b->set_signing_key(other_->PublicKey());
  }
  Directory Load() {
    auto d = Directory::FromProto(proto_, "directory.yaml");
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : Directory();
  }

  std::shared_ptr<const SigningKey> old_ = SigningKey::Generate();
  std::shared_ptr<const SigningKey> new_ = SigningKey::Generate();
  std::shared_ptr<const SigningKey> other_ = SigningKey::Generate();
  v1::FederationDirectory proto_;
};

TEST_F(DirectoryTest, ASignatureVerifiesOnlyWithAKeyValidAtTheTimeItsObjectStates) {
  Directory d = Load();
  const std::string m = "manifest bytes";
  const std::string by_old = old_->Sign(kManifestContext, m);
  const std::string by_new = new_->Sign(kManifestContext, m);
  // Before the rotation only the old key; during the grace day both; after it only the new.
  EXPECT_OK(d.Verify("360102", kRotated - absl::Hours(24 * 365), kManifestContext, m, by_old));
  EXPECT_THAT(d.Verify("360102", kRotated - absl::Hours(1), kManifestContext, m, by_new),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is not 360102's")));
  EXPECT_OK(d.Verify("360102", kRotated + absl::Hours(1), kManifestContext, m, by_old));
  EXPECT_OK(d.Verify("360102", kRotated + absl::Hours(1), kManifestContext, m, by_new));
  EXPECT_THAT(d.Verify("360102", kRotated + absl::Hours(25), kManifestContext, m, by_old),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is not 360102")));
  EXPECT_OK(d.Verify("360102", kRotated + absl::Hours(25), kManifestContext, m, by_new));
  // Another node's key never verifies for this one; an unlisted signer is NOT_FOUND.
  EXPECT_THAT(d.Verify("360102", kRotated, kManifestContext, m, other_->Sign(kManifestContext, m)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is not 360102")));
  EXPECT_THAT(d.Verify("110101", kRotated, kManifestContext, m, by_new),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("not listed")));
  // A node with one key: valid at any time.
  EXPECT_OK(d.Verify("440305", absl::UnixEpoch(), kReceiptContext, m,
                     other_->Sign(kReceiptContext, m)));
}

TEST_F(DirectoryTest, CheckpointsAndCosignaturesAreCheckedByTheirOwnTime) {
  Directory d = Load();
  const std::string name = d.NoteName("360102");
  auto note_at = [&](absl::Time t, const SigningKey& key) {
    const std::string body = CheckpointBody({name, 7, std::string(32, 'r'), absl::ToUnixSeconds(t)});
    auto note = ParseNote(body + "\n" + SignNoteLine(body, name, key));
    EXPECT_OK(note.status());
    return *note;
  };
  EXPECT_OK(d.VerifyCheckpoint(note_at(kRotated - absl::Hours(2), *old_), "360102"));
  EXPECT_OK(d.VerifyCheckpoint(note_at(kRotated + absl::Hours(2), *new_), "360102"));
  // The old key, dated after its period (a stolen key): refused.
  EXPECT_FALSE(d.VerifyCheckpoint(note_at(kRotated + absl::Hours(48), *old_), "360102").ok());
  // A note without a time line (before Caseway 0.2, so before any rotation): only a key valid
  // from the beginning.
  const std::string timeless = CheckpointBody({name, 7, std::string(32, 'r'), 0});
  EXPECT_OK(d.VerifyCheckpoint(*ParseNote(timeless + "\n" + SignNoteLine(timeless, name, *old_)),
                               "360102"));
  EXPECT_FALSE(d.VerifyCheckpoint(*ParseNote(timeless + "\n" + SignNoteLine(timeless, name, *new_)),
                                  "360102")
                   .ok());
  // 360102 cosigning 440305's checkpoint: by the key valid at the cosignature's timestamp.
  const std::string body = CheckpointBody({d.NoteName("440305"), 3, std::string(32, 'x'), 0});
  auto cosigned = [&](const SigningKey& key, absl::Time t) {
    return *ParseNote(body + "\n" + SignCosignatureLine(body, name, key, absl::ToUnixSeconds(t)));
  };
  auto ok = d.VerifyCosignatureOf(cosigned(*new_, kRotated + absl::Hours(30)), "360102");
  ASSERT_OK(ok.status());
  EXPECT_EQ(ok->public_key, new_->PublicKey());
  EXPECT_EQ(ok->time, absl::ToUnixSeconds(kRotated + absl::Hours(30)));
  EXPECT_THAT(d.VerifyCosignatureOf(cosigned(*old_, kRotated + absl::Hours(30)), "360102").status(),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("outside its key's validity")));
}

TEST_F(DirectoryTest, TheKeyValidNowAndWhatIsRefused) {
  Directory d = Load();
  // Now (2026-11) is after the grace day: the new key.
  auto now = d.Key("360102");
  ASSERT_OK(now.status());
  EXPECT_EQ(*now, new_->PublicKey());
  {
    v1::FederationDirectory both = proto_;
    both.mutable_nodes(0)->set_signing_key(old_->PublicKey());
    EXPECT_THAT(Directory::FromProto(both, "d.yaml").status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("d.yaml: nodes[0]: signing_key and keys: give one")));
  }
  {
    v1::FederationDirectory backwards = proto_;
    *backwards.mutable_nodes(0)->mutable_keys(1)->mutable_valid_until() = Ts(kRotated - absl::Hours(1));
    EXPECT_THAT(Directory::FromProto(backwards, "d.yaml").status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("nodes[0].keys[1].valid_until: must be after valid_from")));
  }
  {
    v1::FederationDirectory twice = proto_;
    twice.mutable_nodes(0)->mutable_keys(1)->set_public_key(old_->PublicKey());
    EXPECT_THAT(Directory::FromProto(twice, "d.yaml").status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("keys[1].public_key: listed twice")));
  }
  {
    v1::FederationDirectory short_key = proto_;
    short_key.mutable_nodes(0)->mutable_keys(0)->set_public_key("short");
    EXPECT_THAT(Directory::FromProto(short_key, "d.yaml").status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("keys[0].public_key: a 32-byte Ed25519 public key")));
  }
  {
    // Every key expired: none valid now.
    v1::FederationDirectory expired = proto_;
    *expired.mutable_nodes(0)->mutable_keys(1)->mutable_valid_until() = Ts(kRotated + absl::Hours(2));
    auto d2 = Directory::FromProto(expired, "d.yaml");
    ASSERT_OK(d2.status());
    EXPECT_THAT(d2->Key("360102").status(),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("has no signing key valid now")));
  }
}

}  // namespace
}  // namespace caseway::common
