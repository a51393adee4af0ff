// The operator console's files (proxy/console/), compiled into the binary at build time by
// proxy/console/embed_files.cmake, so GET / works offline with nothing to install or fetch.
#ifndef SLOTPILOT_PROXY_CONSOLE_FILES_H_
#define SLOTPILOT_PROXY_CONSOLE_FILES_H_

#include <span>
#include <string_view>

namespace slotpilot::proxy {

struct ConsoleFile {
  std::string_view name;          // file name in proxy/console/, e.g. "console.js"
  std::string_view content_type;  // from the extension
  std::string_view body;          // static storage: valid for the life of the process
};

// Every embedded file; thread-safe (constant data).
std::span<const ConsoleFile> ConsoleFiles();

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_CONSOLE_FILES_H_
