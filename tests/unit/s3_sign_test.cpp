// AWS Signature Version 4 (backend/s3/sign.hpp) against AWS's published
// example (S3 developer guide, "Example: GET Object"), and S3's encoding.

#include <gtest/gtest.h>

#include "backend/s3/sign.hpp"

namespace xfer::s3 {
namespace {

TEST(S3Sign, AwsPublishedGetObjectExample) {
  Request r;
  r.method = "GET";
  r.host = "examplebucket.s3.amazonaws.com";
  r.path = "/test.txt";
  r.headers = {{"Range", "bytes=0-9"}};
  r.payload_hash = sha256_hex(std::string_view());
  Credentials c;
  c.access_key_id = "AKIAIOSFODNN7EXAMPLE";
  c.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  const auto h = sign_v4(r, c, 1369353600);  // Fri, 24 May 2013 00:00:00 GMT
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0], "x-amz-date: 20130524T000000Z");
  EXPECT_EQ(h[1],
            "x-amz-content-sha256: "
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(h[2],
            "Authorization: AWS4-HMAC-SHA256 "
            "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  c.session_token = "token";
  const auto t = sign_v4(r, c, 1369353600);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t[2], "x-amz-security-token: token");
  EXPECT_NE(t[3].find("x-amz-date;x-amz-security-token"), std::string::npos);
}

TEST(S3Sign, EncodingAndQueryOrder) {
  EXPECT_EQ(uri_encode("a b/c+d~e_.-", true), "a%20b/c%2Bd~e_.-");
  EXPECT_EQ(uri_encode("a/b", false), "a%2Fb");
  EXPECT_EQ(uri_encode("\xc3\xa9", false), "%C3%A9");
  EXPECT_EQ(canonical_query({{"prefix", "a b"}, {"list-type", "2"}, {"delimiter", "/"}}),
            "delimiter=%2F&list-type=2&prefix=a%20b");
  EXPECT_EQ(canonical_query({{"uploads", ""}}), "uploads=");
}

}  // namespace
}  // namespace xfer::s3
