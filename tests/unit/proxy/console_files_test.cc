// The operator console built into the binary (proxy/console/ -> console_files.cc): every file is
// there with its type, the page loads only its own files, and nothing inline would be blocked
// by the admin port's Content-Security-Policy.
#include "proxy/console_files.h"

#include <map>
#include <regex>
#include <string>

#include <gtest/gtest.h>

namespace slotpilot::proxy {
namespace {

std::string Body(std::string_view name) {
  for (const ConsoleFile& f : ConsoleFiles()) {
    if (f.name == name) return std::string(f.body);
  }
  ADD_FAILURE() << name << " is not embedded";
  return "";
}

TEST(ConsoleFilesTest, EveryFileIsEmbeddedWithItsType) {
  std::map<std::string, std::string> types;
  for (const ConsoleFile& f : ConsoleFiles()) {
    EXPECT_GT(f.body.size(), 100u) << f.name;
    types[std::string(f.name)] = std::string(f.content_type);
  }
  EXPECT_EQ(types, (std::map<std::string, std::string>{
                       {"index.html", "text/html; charset=utf-8"},
                       {"console.css", "text/css; charset=utf-8"},
                       {"console.js", "text/javascript; charset=utf-8"},
                       {"draw.js", "text/javascript; charset=utf-8"}}));
}

TEST(ConsoleFilesTest, BodiesAreTheSourceFilesByteForByte) {
  // A raw-string literal keeps backslashes, quotes and template literals as they are.
  const std::string js = Body("console.js");
  EXPECT_NE(js.find(R"(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/)"), std::string::npos);
  EXPECT_NE(js.find("`/v1/migrations/${pending.slot}/${pending.action}`"), std::string::npos);
  EXPECT_EQ(Body("index.html").rfind("<!doctype html>", 0), 0u);
}

TEST(ConsoleFilesTest, PageLoadsOnlyItsOwnFilesAndNothingInline) {
  const std::string html = Body("index.html");
  EXPECT_NE(html.find(R"(<link rel="stylesheet" href="/console.css">)"), std::string::npos);
  EXPECT_NE(html.find(R"(<script type="module" src="/console.js"></script>)"), std::string::npos);
  EXPECT_NE(Body("console.js").find(R"(from "/draw.js";)"), std::string::npos);
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(<script(?![^>]*\bsrc=)[^>]*>)")));
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(<style|\sstyle=|\son[a-z]+=)")));
  for (std::string_view name : {"index.html", "console.css", "console.js", "draw.js"}) {
    EXPECT_FALSE(std::regex_search(Body(name), std::regex(R"(https?://)"))) << name << " names a URL";
  }
}

}  // namespace
}  // namespace slotpilot::proxy
