#ifndef SLOTPILOT_PROXY_VERSION_H_
#define SLOTPILOT_PROXY_VERSION_H_

#include <string_view>

namespace slotpilot::proxy {
// "0.1.0"
std::string_view Version();
}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_VERSION_H_
