/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "auth.h"
#include "tests.h"

static int parse_ok(const char *header, AuthChallenge **ret) {
        return auth_challenge_parse(header, ret);
}

TEST(challenge_bearer_registry) {
        _cleanup_(auth_challenge_freep) AuthChallenge *c = NULL;

        ASSERT_OK(parse_ok("Bearer realm=\"http://127.0.0.1:15001/token\",service=\"fmt-registry\","
                           "scope=\"repository:fmt/app:pull\"", &c));
        ASSERT_EQ(c->scheme, AUTH_SCHEME_BEARER);
        ASSERT_STREQ(c->realm, "http://127.0.0.1:15001/token");
        ASSERT_STREQ(c->service, "fmt-registry");
        ASSERT_STREQ(c->scope, "repository:fmt/app:pull");
        ASSERT_TRUE(!c->error);
        return 0;
}

TEST(challenge_values_with_commas_and_spaces) {
        _cleanup_(auth_challenge_freep) AuthChallenge *c = NULL;

        ASSERT_OK(parse_ok("bEaReR   realm = \"https://auth.example/token\" , service=\"svc\","
                           "scope=\"repository:other/repo:pull,push repository:fmt/app:pull\",error=\"insufficient_scope\"",
                           &c));
        ASSERT_EQ(c->scheme, AUTH_SCHEME_BEARER);
        ASSERT_STREQ(c->realm, "https://auth.example/token");
        ASSERT_STREQ(c->scope, "repository:other/repo:pull,push repository:fmt/app:pull");
        ASSERT_STREQ(c->error, "insufficient_scope");
        return 0;
}

TEST(challenge_escapes_and_tokens) {
        _cleanup_(auth_challenge_freep) AuthChallenge *c = NULL;

        ASSERT_OK(parse_ok("Bearer realm=\"http://a/t?x=\\\"q\\\\\",service=plain-token,unknown=\"x,y\"", &c));
        ASSERT_STREQ(c->realm, "http://a/t?x=\"q\\");
        ASSERT_STREQ(c->service, "plain-token");
        ASSERT_TRUE(!c->scope);
        return 0;
}

TEST(challenge_basic) {
        _cleanup_(auth_challenge_freep) AuthChallenge *c = NULL, *d = NULL;

        ASSERT_OK(parse_ok("Basic realm=\"Registry Realm\"", &c));
        ASSERT_EQ(c->scheme, AUTH_SCHEME_BASIC);
        ASSERT_STREQ(c->realm, "Registry Realm");

        ASSERT_OK(parse_ok("BASIC", &d));
        ASSERT_EQ(d->scheme, AUTH_SCHEME_BASIC);
        ASSERT_TRUE(!d->realm);
        return 0;
}

TEST(challenge_several_prefers_bearer) {
        _cleanup_(auth_challenge_freep) AuthChallenge *c = NULL, *d = NULL;

        ASSERT_OK(parse_ok("Negotiate abc==, Basic realm=\"r\", Bearer realm=\"http://t/\",service=\"s\"", &c));
        ASSERT_EQ(c->scheme, AUTH_SCHEME_BEARER);
        ASSERT_STREQ(c->realm, "http://t/");
        ASSERT_STREQ(c->service, "s");

        ASSERT_OK(parse_ok("Negotiate, Basic realm=\"r\"", &d));
        ASSERT_EQ(d->scheme, AUTH_SCHEME_BASIC);
        ASSERT_STREQ(d->realm, "r");
        return 0;
}

static int check_challenge_error(const char *header, int err, const char *reason) {
        AuthChallenge *c = NULL;
        int r;

        r = auth_challenge_parse(header, &c);
        ASSERT_ERROR(r, err);
        ASSERT_ERROR_MESSAGE(r, reason);
        ASSERT_TRUE(!c);
        return 0;
}

#define CHECK_CHALLENGE_ERROR(...) ASSERT_TRUE(check_challenge_error(__VA_ARGS__) == 0)

TEST(challenge_invalid) {
        CHECK_CHALLENGE_ERROR("", EINVAL, "invalid WWW-Authenticate header '': missing authentication scheme");
        CHECK_CHALLENGE_ERROR(" , ", EINVAL, "invalid WWW-Authenticate header ' , ': missing authentication scheme");
        CHECK_CHALLENGE_ERROR("Bearer realm=\"http://x", EINVAL,
                              "invalid WWW-Authenticate header 'Bearer realm=\"http://x': unterminated quoted string");
        CHECK_CHALLENGE_ERROR("Bearer realm=\"x\\", EINVAL,
                              "invalid WWW-Authenticate header 'Bearer realm=\"x\\': unterminated quoted string");
        CHECK_CHALLENGE_ERROR("Bearer service=\"s\",realm=", EINVAL,
                              "invalid WWW-Authenticate header 'Bearer service=\"s\",realm=': "
                              "missing value for parameter 'realm'");
        CHECK_CHALLENGE_ERROR("Bearer realm=\"a\" service=\"b\"", EINVAL,
                              "invalid WWW-Authenticate header 'Bearer realm=\"a\" service=\"b\"': "
                              "expected ',' after parameter 'realm'");
        CHECK_CHALLENGE_ERROR("Bearer realm=\"a\",REALM=\"b\"", EINVAL,
                              "invalid WWW-Authenticate header 'Bearer realm=\"a\",REALM=\"b\"': "
                              "duplicate parameter 'REALM'");
        CHECK_CHALLENGE_ERROR("Bearer\"x\"", EINVAL,
                              "invalid WWW-Authenticate header 'Bearer\"x\"': expected a space after scheme 'Bearer'");
        CHECK_CHALLENGE_ERROR("Bearer x y", EINVAL,
                              "invalid WWW-Authenticate header 'Bearer x y': unexpected text 'x y' after scheme 'Bearer'");
        CHECK_CHALLENGE_ERROR("Bearer realm=\"a\", \"b\"", EINVAL,
                              "invalid WWW-Authenticate header 'Bearer realm=\"a\", \"b\"': "
                              "expected an authentication scheme at '\"b\"'");
        CHECK_CHALLENGE_ERROR("Bearer service=\"s\"", EBADMSG,
                              "invalid WWW-Authenticate header 'Bearer service=\"s\"': Bearer challenge without a realm");
        CHECK_CHALLENGE_ERROR("Negotiate abc==", EOPNOTSUPP,
                              "unsupported authentication scheme 'Negotiate' (only Basic and Bearer are supported)");
        return 0;
}

#define REGISTRY_JSON                                                                   \
        "{\"auths\":{"                                                                  \
        "\"https://index.docker.io/v1/\":{\"auth\":\"aHViOmh1YnBhc3M=\"},"              \
        "\"127.0.0.1:5000\":{\"username\":\"alice\",\"password\":\"p:w\"},"             \
        "\"https://ghcr.io\":{\"auth\":\"Z2g6dG9rZW4\"},"                                \
        "\"helper.example\":{}"                                                         \
        "}}"

static int lookup(const char *json, const char *registry, AuthCredentials **ret) {
        return auth_credentials_from_json(json, strlen(json), "/etc/test.json", registry, ret);
}

TEST(credentials_lookup) {
        _cleanup_(auth_credentials_freep) AuthCredentials *hub = NULL, *local = NULL, *ghcr = NULL;
        AuthCredentials *none = (AuthCredentials *) 1;

        ASSERT_OK(lookup(REGISTRY_JSON, "docker.io", &hub));
        ASSERT_STREQ(hub->username, "hub");
        ASSERT_STREQ(hub->password, "hubpass");

        ASSERT_OK(lookup(REGISTRY_JSON, "127.0.0.1:5000", &local));
        ASSERT_STREQ(local->username, "alice");
        ASSERT_STREQ(local->password, "p:w");

        /* Unpadded base64 and a key with a scheme. */
        ASSERT_OK(lookup(REGISTRY_JSON, "ghcr.io", &ghcr));
        ASSERT_STREQ(ghcr->username, "gh");
        ASSERT_STREQ(ghcr->password, "token");

        ASSERT_OK(lookup(REGISTRY_JSON, "127.0.0.1:5001", &none));
        ASSERT_TRUE(!none);
        none = (AuthCredentials *) 1;
        ASSERT_OK(lookup(REGISTRY_JSON, "helper.example", &none));
        ASSERT_TRUE(!none);
        none = (AuthCredentials *) 1;
        ASSERT_OK(lookup("{\"credsStore\":\"desktop\"}", "docker.io", &none));
        ASSERT_TRUE(!none);
        return 0;
}

TEST(credentials_exact_key_wins) {
        _cleanup_(auth_credentials_freep) AuthCredentials *c = NULL;

        ASSERT_OK(lookup("{\"auths\":{\"https://r.example/v1/\":{\"auth\":\"YTpi\"},"
                         "\"r.example\":{\"auth\":\"Yzpk\"}}}", "r.example", &c));
        ASSERT_STREQ(c->username, "c");
        ASSERT_STREQ(c->password, "d");
        return 0;
}

static int check_credentials_error(const char *json, const char *reason) {
        AuthCredentials *c = NULL;
        int r;

        r = lookup(json, "r.example", &c);
        ASSERT_ERROR(r, EBADMSG);
        ASSERT_ERROR_MESSAGE(r, reason);
        ASSERT_TRUE(!c);
        return 0;
}

#define CHECK_CREDENTIALS_ERROR(...) ASSERT_TRUE(check_credentials_error(__VA_ARGS__) == 0)

TEST(credentials_invalid) {
        CHECK_CREDENTIALS_ERROR("{\"auths\":", "invalid credentials file /etc/test.json: "
                                "unexpected token near end of file (line 1, column 9)");
        CHECK_CREDENTIALS_ERROR("[]", "invalid credentials file /etc/test.json: top level is not a JSON object");
        CHECK_CREDENTIALS_ERROR("{\"auths\":[]}", "invalid credentials file /etc/test.json: \"auths\" is not an object");
        CHECK_CREDENTIALS_ERROR("{\"auths\":{\"r.example\":1}}",
                                "invalid credentials file /etc/test.json: entry 'r.example' in \"auths\" is not an object");
        CHECK_CREDENTIALS_ERROR("{\"auths\":{\"r.example\":{\"auth\":5}}}",
                                "invalid credentials file /etc/test.json: \"auth\" of 'r.example' is not a string");
        CHECK_CREDENTIALS_ERROR("{\"auths\":{\"r.example\":{\"auth\":\"!!!!\"}}}",
                                "invalid credentials file /etc/test.json: \"auth\" of 'r.example' is not valid base64");
        CHECK_CREDENTIALS_ERROR("{\"auths\":{\"r.example\":{\"auth\":\"YWJj\"}}}",
                                "invalid credentials file /etc/test.json: decoded \"auth\" of 'r.example' has no ':' "
                                "between username and password");
        CHECK_CREDENTIALS_ERROR("{\"auths\":{\"r.example\":{\"username\":\"a\"}}}",
                                "invalid credentials file /etc/test.json: \"username\" and \"password\" of 'r.example' "
                                "must both be strings");
        return 0;
}

TEST(credentials_find_in_files) {
        char dir[] = "/tmp/test-auth-XXXXXX", path[256], docker_dir[300];
        _cleanup_(auth_credentials_freep) AuthCredentials *c = NULL, *d = NULL;
        AuthCredentials *none = (AuthCredentials *) 1;
        FILE *f;
        int r;

        ASSERT_TRUE(mkdtemp(dir));
        unsetenv("REGISTRY_AUTH_FILE");
        unsetenv("DOCKER_CONFIG");
        setenv("HOME", dir, 1);

        /* No file at all: no credentials, no error. */
        ASSERT_OK(auth_credentials_find("r.example", &none));
        ASSERT_TRUE(!none);

        snprintf(docker_dir, sizeof(docker_dir), "%s/.docker", dir);
        ASSERT_TRUE(mkdir(docker_dir, 0700) == 0);
        snprintf(path, sizeof(path), "%s/.docker/config.json", dir);
        f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs("{\"auths\":{\"r.example\":{\"auth\":\"dTpw\"}}}", f);
        fclose(f);

        ASSERT_OK(auth_credentials_find("r.example", &c));
        ASSERT_STREQ(c->username, "u");
        ASSERT_STREQ(c->password, "p");

        /* $DOCKER_CONFIG names a directory without config.json: no credentials. */
        setenv("DOCKER_CONFIG", dir, 1);
        none = (AuthCredentials *) 1;
        ASSERT_OK(auth_credentials_find("r.example", &none));
        ASSERT_TRUE(!none);

        /* $REGISTRY_AUTH_FILE wins, and a malformed file is an error naming it. */
        snprintf(path, sizeof(path), "%s/auth.json", dir);
        f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs("{\"auths\":{\"r.example\":{\"auth\":\"dzpx\"}}}", f);
        fclose(f);
        setenv("REGISTRY_AUTH_FILE", path, 1);
        ASSERT_OK(auth_credentials_find("r.example", &d));
        ASSERT_STREQ(d->username, "w");
        ASSERT_STREQ(d->password, "q");

        f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs("{oops", f);
        fclose(f);
        r = auth_credentials_find("r.example", &none);
        ASSERT_ERROR(r, EBADMSG);
        {
                char reason[512];

                snprintf(reason, sizeof(reason),
                         "invalid credentials file %s: string or '}' expected near 'oops' (line 1, column 5)", path);
                ASSERT_ERROR_MESSAGE(r, reason);
        }

        unsetenv("REGISTRY_AUTH_FILE");
        unsetenv("DOCKER_CONFIG");
        unlink(path);
        snprintf(path, sizeof(path), "%s/.docker/config.json", dir);
        unlink(path);
        rmdir(docker_dir);
        rmdir(dir);
        return 0;
}

TEST(basic_header_value) {
        AuthCredentials c = { .username = (char *) "alice", .password = (char *) "secret" };
        _cleanup_free_ char *v = NULL;

        ASSERT_OK(auth_basic_header_value(&c, &v));
        ASSERT_STREQ(v, "Basic YWxpY2U6c2VjcmV0");
        return 0;
}

DEFINE_TEST_MAIN
