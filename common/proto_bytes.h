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
inline std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sink(&out);
    google::protobuf::io::CodedOutputStream coded(&sink);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_PROTO_BYTES_H_
