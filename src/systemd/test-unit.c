/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "strv.h"
#include "tests.h"
#include "unit.h"

static const UnitProperty *find(const UnitSpec *s, const char *name) {
        for (size_t i = 0; i < s->n_properties; i++)
                if (streq(s->properties[i].name, name))
                        return &s->properties[i];
        return NULL;
}

TEST(assignments_typed) {
        _cleanup_(unit_spec_freep) UnitSpec *s = NULL;

        ASSERT_OK(unit_spec_new("cocoon-vm@web.service", &s));
        ASSERT_OK(unit_spec_add_assignment(s, "MemoryMax=2G"));
        ASSERT_OK(unit_spec_add_assignment(s, "MemoryHigh=infinity"));
        ASSERT_OK(unit_spec_add_assignment(s, "CPUQuota=150%"));
        ASSERT_OK(unit_spec_add_assignment(s, "CPUWeight=500"));
        ASSERT_OK(unit_spec_add_assignment(s, "TasksMax=64"));
        ASSERT_OK(unit_spec_add_assignment(s, "Nice=-5"));
        ASSERT_OK(unit_spec_add_assignment(s, "MemoryAccounting=yes"));

        ASSERT_EQ(find(s, "MemoryMax")->u, 2ULL << 30);
        ASSERT_EQ(find(s, "MemoryMax")->type, UNIT_PROPERTY_UINT64);
        ASSERT_TRUE(find(s, "MemoryHigh")->u == UINT64_MAX);
        ASSERT_EQ(find(s, "CPUQuotaPerSecUSec")->u, 1500000);
        ASSERT_EQ(find(s, "CPUWeight")->u, 500);
        ASSERT_EQ(find(s, "Nice")->i, -5);
        ASSERT_TRUE(find(s, "MemoryAccounting")->b);
        return 0;
}

TEST(assignments_rejected) {
        _cleanup_(unit_spec_freep) UnitSpec *s = NULL;
        int r;

        ASSERT_OK(unit_spec_new("x.service", &s));
        r = unit_spec_add_assignment(s, "ExecStart=/bin/sh");
        ASSERT_ERROR(r, EOPNOTSUPP);
        ASSERT_TRUE(startswith(error_message(r), "unsupported property 'ExecStart': Cocoon accepts MemoryMax"));
        r = unit_spec_add_assignment(s, "NetworkNamespacePath=/proc/1/ns/net");
        ASSERT_ERROR(r, EOPNOTSUPP);
        r = unit_spec_add_assignment(s, "MemoryMax");
        ASSERT_ERROR_MESSAGE(r, "invalid property 'MemoryMax': expected KEY=VALUE");
        r = unit_spec_add_assignment(s, "=5");
        ASSERT_ERROR_MESSAGE(r, "invalid property '=5': expected KEY=VALUE");
        r = unit_spec_add_assignment(s, "MemoryMax=lots");
        ASSERT_ERROR_MESSAGE(r, "invalid value 'lots' for MemoryMax: expected a size such as 512M or 'infinity'");
        r = unit_spec_add_assignment(s, "CPUQuota=50");
        ASSERT_ERROR_MESSAGE(r, "invalid value '50' for CPUQuota: expected a percentage such as 50%");
        r = unit_spec_add_assignment(s, "CPUWeight=0");
        ASSERT_ERROR_MESSAGE(r, "invalid value '0' for CPUWeight: expected 1 to 10000");
        r = unit_spec_add_assignment(s, "Nice=20");
        ASSERT_ERROR_MESSAGE(r, "invalid value '20' for Nice: expected -20 to 19");
        r = unit_spec_add_assignment(s, "TasksMax=-1");
        ASSERT_ERROR_MESSAGE(r, "invalid value '-1' for TasksMax: expected a number or 'infinity'");
        r = unit_spec_add_assignment(s, "MemoryAccounting=maybe");
        ASSERT_ERROR_MESSAGE(r, "invalid value 'maybe' for MemoryAccounting: expected yes or no");
        ASSERT_EQ(s->n_properties, 0);
        return 0;
}

TEST(quote_words) {
        _cleanup_free_ char *a = unit_quote_word("path=/x,readonly=on");
        _cleanup_free_ char *b = unit_quote_word("console=hvc0 rw");
        _cleanup_free_ char *c = unit_quote_word("a\"b$c");
        _cleanup_free_ char *d = unit_quote_word("");

        ASSERT_STREQ(a, "path=/x,readonly=on");
        ASSERT_STREQ(b, "\"console=hvc0 rw\"");
        ASSERT_STREQ(c, "\"a\\\"b\\$c\"");
        ASSERT_STREQ(d, "\"\"");
        return 0;
}

TEST(print_spec) {
        _cleanup_(unit_spec_freep) UnitSpec *s = NULL;
        char *argv[] = { (char *) "/usr/bin/cloud-hypervisor", (char *) "--cmdline", (char *) "console=hvc0 rw", NULL };
        char *buf = NULL;
        size_t len = 0;
        FILE *f;

        ASSERT_OK(unit_spec_new("cocoon-vm@web.service", &s));
        ASSERT_OK(unit_spec_add_string(s, "Description", "Cocoon VM web"));
        ASSERT_OK(unit_spec_add_exec(s, "ExecStart", argv, false));
        ASSERT_OK(unit_spec_add_uint64(s, "TimeoutStopUSec", 40000000));
        f = open_memstream(&buf, &len);
        unit_spec_print(s, f);
        fclose(f);
        ASSERT_STREQ(buf, "# cocoon-vm@web.service\n"
                          "Description=Cocoon VM web\n"
                          "ExecStart=/usr/bin/cloud-hypervisor --cmdline \"console=hvc0 rw\"\n"
                          "TimeoutStopUSec=40000000\n");
        free(buf);
        return 0;
}

DEFINE_TEST_MAIN
