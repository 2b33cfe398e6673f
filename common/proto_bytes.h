// The one way Caseway serializes messages whose bytes are stored, hashed or signed.
#ifndef CASEWAY_COMMON_PROTO_BYTES_H_
#define CASEWAY_COMMON_PROTO_BYTES_H_

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>

#include <string>

namespace caseway::common {

// DeterministicBytes serializes `m` with deterministic map ordering. The bytes are then kept as
// they are: anything hashed or signed is computed over them, never over a re-serialization.
// Written into a string sized once (ByteSizeLong, which serializing computes anyway), not one
// that a StringOutputStream grows and zero-fills step by step (bench/results/PROFILE.md).
inline std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out(m.ByteSizeLong(), '\0');
  {
    google::protobuf::io::ArrayOutputStream sink(out.data(), static_cast<int>(out.size()));
    google::protobuf::io::CodedOutputStream coded(&sink);
    coded.SetSerializationDeterministic(true);
    m.SerializeWithCachedSizes(&coded);
  }
  return out;
}

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_PROTO_BYTES_H_
