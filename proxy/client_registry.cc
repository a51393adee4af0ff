#include "proxy/client_registry.h"

#include <algorithm>

namespace slotpilot::proxy {

void ClientRegistry::Add(ClientRow* row) {
  std::lock_guard<std::mutex> lock(mu_);
  auto at = std::lower_bound(entries_.begin(), entries_.end(), row->id,
                             [](const Entry& e, uint64_t id) { return e.row->id < id; });
  entries_.insert(at, Entry{row, std::string()});
}

void ClientRegistry::Remove(ClientRow* row) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(), [row](const Entry& e) { return e.row == row; });
  if (it != entries_.end()) entries_.erase(it);
}

void ClientRegistry::SetName(ClientRow* row, std::string_view name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Entry& e : entries_) {
    if (e.row == row) e.name.assign(name.data(), name.size());
  }
}

void ClientRegistry::ForEach(
    absl::FunctionRef<void(const ClientRow&, const std::string& name)> fn) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Entry& e : entries_) fn(*e.row, e.name);
}

int64_t ClientRegistry::CountBlocked() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const Entry& e : entries_) n += e.row->HasFlag(ClientRow::kBlocked) ? 1 : 0;
  return n;
}

}  // namespace slotpilot::proxy
