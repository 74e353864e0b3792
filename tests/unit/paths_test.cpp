// The data paths of a session (src/backend/xfer/paths.hpp): what a server
// may advertise, what --bind accepts, and how the two are paired.

#include "backend/xfer/paths.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "xfer/core/url.hpp"

namespace xfer {
namespace {

std::vector<std::string> names(const std::vector<DataPath>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) out.push_back(p.name);
  return out;
}

TEST(DataPaths, OnePathPerAdvertisedAddressWithoutBind) {
  auto p = plan_data_paths({"10.99.0.2:7401", "10.99.1.2:7402"}, "10.99.0.2", false, {});
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(names(*p), (std::vector<std::string>{"10.99.0.2:7401", "10.99.1.2:7402"}));
  EXPECT_EQ((*p)[1].host, "10.99.1.2");
  EXPECT_EQ((*p)[1].port, 7402);
  EXPECT_EQ((*p)[1].local, "");
}

TEST(DataPaths, BindPairsLocalAddressesInTurn) {
  auto two = plan_data_paths({"10.0.0.9:7401"}, "h", false, {"10.0.1.1", "10.0.2.1"});
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(names(*two),
            (std::vector<std::string>{"10.0.1.1>10.0.0.9:7401", "10.0.2.1>10.0.0.9:7401"}));
  auto pairs = plan_data_paths({"10.0.1.2:1", "10.0.2.2:1"}, "h", false, {"10.0.1.1", "10.0.2.1"});
  ASSERT_TRUE(pairs.ok());
  EXPECT_EQ(names(*pairs),
            (std::vector<std::string>{"10.0.1.1>10.0.1.2:1", "10.0.2.1>10.0.2.2:1"}));
  auto v6 = plan_data_paths({"[fd00::2]:7401"}, "h", false, {"fd00::1"});
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(names(*v6), (std::vector<std::string>{"fd00::1>[fd00::2]:7401"}));
}

TEST(DataPaths, AWildcardListenerIsReachedAtTheControlHost) {
  auto p = plan_data_paths({"0.0.0.0:7401", "[::]:7402"}, "192.0.2.7", false, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(names(*p), (std::vector<std::string>{"192.0.2.7:7401", "192.0.2.7:7402"}));
}

TEST(DataPaths, DuplicatesCountOnce) {
  auto p = plan_data_paths({"10.0.0.2:7401", "10.0.0.2:7401", "10.0.0.2:7401"}, "h", false, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->size(), 1u);
}

// What a hostile server may send instead of addresses: each is refused
// with a clear error before anything connects anywhere.
TEST(DataPaths, HostileAdvertisementsAreRefused) {
  const std::vector<std::vector<std::string>> bad = {
      {},                                    // none
      {"evil.example:7401"},                 // a name the client would resolve
      {"localhost:22"},                      // ditto
      {"10.0.0.1:0"},                        // port 0
      {"10.0.0.1:65536"},                    // out of range
      {"10.0.0.1"},                          // no port
      {"10.0.0.1:7401x"},                    // garbage port
      {":7401"},                             // no host
      {"[]:7401"},                           // empty v6
      {"[fd00::1:7401"},                     // unclosed bracket
      {std::string(5000, '1') + ":7401"},    // huge
      {"10.0.0.1:7401", "10.0.0.1\n:7401"},  // a control character in the second
  };
  for (const auto& adv : bad) {
    auto p = plan_data_paths(adv, "10.0.0.1", false, {});
    ASSERT_FALSE(p.ok()) << (adv.empty() ? "(none)" : adv.back());
    EXPECT_NE(p.error().message().find("the server advertised a bad data address"),
              std::string::npos)
        << p.error().message();
    EXPECT_LT(p.error().message().size(), 400u);
  }
  std::vector<std::string> many;
  for (int i = 0; i < 17; ++i) many.push_back("10.0.0." + std::to_string(i + 1) + ":7401");
  EXPECT_FALSE(plan_data_paths(many, "h", false, {}).ok());
  many.pop_back();
  EXPECT_TRUE(plan_data_paths(many, "h", false, {}).ok());
}

// A remote server may not point the client at its own loopback, at
// link-local, multicast or broadcast addresses; every spelling of "any"
// means the control host.
TEST(DataPaths, OnlyOrdinaryUnicastAddressesOfTheServersScope) {
  for (const char* bad : {"127.0.0.1:6379", "[::1]:22", "[::ffff:127.0.0.1]:80",
                          "169.254.169.254:80", "[fe80::1]:7401", "224.0.0.1:7401",
                          "255.255.255.255:7401", "0.1.2.3:7401", "[ff02::1]:7401"}) {
    auto p = plan_data_paths({bad}, "192.0.2.7", false, {});
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_NE(p.error().message().find("bad data address"), std::string::npos)
        << p.error().message();
  }
  // Loopback is fine when the control channel went over loopback too.
  EXPECT_TRUE(plan_data_paths({"127.0.0.1:7401"}, "127.0.0.1", true, {}).ok());
  EXPECT_TRUE(plan_data_paths({"[::1]:7401"}, "::1", true, {}).ok());
  for (const char* any : {"[::0]:7401", "[0:0::0]:7401", "[::]:7401", "0.0.0.0:7401"}) {
    auto p = plan_data_paths({any}, "192.0.2.7", false, {});
    ASSERT_TRUE(p.ok()) << any;
    EXPECT_EQ((*p)[0].host, "192.0.2.7") << any;
  }
  // Private and global unicast addresses are what NICs have.
  EXPECT_TRUE(plan_data_paths({"10.99.1.2:7401", "[2001:db8::2]:7401"}, "h", false, {}).ok());
}

TEST(DataPaths, BindOfAnotherFamilyIsTheUsersError) {
  auto p = plan_data_paths({"[2001:db8::2]:7401"}, "h", false, {"10.0.0.1"});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(p.error().message().find("an IPv4 address cannot reach"), std::string::npos)
      << p.error().message();
}

TEST(AddressList, TakesNumericAddressesSeparatedByCommas) {
  auto l = parse_address_list("10.0.1.1,fd00::1,,10.0.2.1");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(*l, (std::vector<std::string>{"10.0.1.1", "fd00::1", "10.0.2.1"}));
  EXPECT_TRUE(parse_address_list("").ok());
  EXPECT_TRUE(parse_address_list("")->empty());
  for (const char* bad :
       {"eth0", "10.0.0.1,host.example", "10.0.0.256", "[::1]", "10.0.0.1:80", " 10.0.0.1"}) {
    auto r = parse_address_list(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message().find("not a numeric IP address"), std::string::npos)
        << r.error().message();
  }
  std::string seventeen;
  for (int i = 0; i < 17; ++i) seventeen += "10.0.0." + std::to_string(i + 1) + ",";
  EXPECT_FALSE(parse_address_list(seventeen).ok());
}

}  // namespace
}  // namespace xfer
