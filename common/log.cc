#include "common/log.h"

#include <cstdio>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace caseway::common {
namespace {

LogLevel g_level = LogLevel::kInfo;
bool g_json = false;
std::mutex g_mu;

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

}  // namespace

void ConfigureLog(LogLevel level, bool json) {
  g_level = level;
  g_json = json;
}

LogLevel ParseLogLevel(absl::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

void Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields) {
  if (level < g_level) return;
  std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  if (g_json) {
    line = absl::StrCat("{\"time\":\"", ts, "\",\"level\":\"", LevelName(level), "\",\"msg\":");
    AppendJsonString(message, line);
    for (const auto& [k, v] : fields) {
      line.push_back(',');
      AppendJsonString(k, line);
      line.push_back(':');
      AppendJsonString(v, line);
    }
    line += "}\n";
  } else {
    line = absl::StrCat(ts, " ", LevelName(level), " ", message);
    for (const auto& [k, v] : fields) {
      // Quote values that could be mistaken for more fields or lines (peer-supplied text).
      bool plain = !v.empty() && v.find_first_of(" \"=\n\r\t") == std::string::npos;
      absl::StrAppend(&line, " ", k, "=", plain ? v : JsonQuote(v));
    }
    line.push_back('\n');
  }
  std::lock_guard<std::mutex> lock(g_mu);
  fputs(line.c_str(), stderr);
  fflush(stderr);
}

}  // namespace caseway::common
