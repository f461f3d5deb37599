"""_exports: client and option validation, the world-wide refusal, exports(5) rendering and parsing, the file name,
and the exportfs calls chosen for each change."""

from __future__ import annotations

import pytest

from ansible_collections.ferry.runc.plugins.module_utils._exports import (
    Client,
    Entry,
    ExportsError,
    exportfs_commands,
    managed_file_name,
    parse_client,
    parse_clients,
    parse_exports,
    render_line,
    render_managed_file,
    validate_options,
    validate_path,
)

EXPORTFS = "/usr/sbin/exportfs"
RW = "rw,sync,no_subtree_check,no_root_squash"


@pytest.mark.parametrize(
    ("spec", "client"),
    [
        ("10.99.0.2", Client("10.99.0.2", "10.99.0.2", False)),
        ("2001:DB8::0002", Client("2001:db8::2", "[2001:db8::2]", False)),
        ("10.99.0.0/24", Client("10.99.0.0/24", "10.99.0.0/24", False)),
        ("10.99.0.0/255.255.255.0", Client("10.99.0.0/24", "10.99.0.0/24", False)),
        ("2001:db8::/64", Client("2001:db8::/64", "[2001:db8::/64]", False)),
        ("dst", Client("dst", "dst", False)),
        ("dst-1.example.org", Client("dst-1.example.org", "dst-1.example.org", False)),
        ("node*.example.org", Client("node*.example.org", "node*.example.org", False)),
        ("node[0-9].example.org", Client("node[0-9].example.org", "node[0-9].example.org", False)),
        ("@migration", Client("@migration", "@migration", False)),
        ("*", Client("*", "*", True)),
        ("*.*", Client("*.*", "*.*", True)),
        ("0.0.0.0/0", Client("0.0.0.0/0", "0.0.0.0/0", True)),
        ("0.0.0.0/0.0.0.0", Client("0.0.0.0/0", "0.0.0.0/0", True)),
        ("::/0", Client("::/0", "[::/0]", True)),
    ],
)
def test_a_valid_client_is_canonical_and_knows_whether_it_is_everyone(spec, client):
    assert parse_client(spec) == client


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("10.99.0.1/24", "is not a valid IP network: 10.99.0.1/24 has host bits set"),
        ("10.99.0.0/33", "is not a valid IP network"),
        ("10.99.0.*", "wildcards do not match IP addresses"),
        ("10.99.0", "is not a valid IP address"),
        ("@", "is not a valid @netgroup name"),
        ("@bad group", "is not a valid @netgroup name"),
        ("dst(rw)", "is neither a host name"),
        ("-dst", "is neither a host name"),
        ("a..b", "is neither a host name"),
        ("node[0-9.example.org", "is neither a host name"),
        ("", "is neither a host name"),
        ("dst example", "is neither a host name"),
    ],
)
def test_a_bad_client_is_refused_with_the_reason(spec, message):
    with pytest.raises(ExportsError) as error:
        parse_client(spec)
    assert str(error.value).startswith(f"client {spec!r}")
    assert message in str(error.value)


@pytest.mark.parametrize("world", ["*", "0.0.0.0/0", "::/0", "*.*", "0.0.0.0/0.0.0.0"])
def test_a_world_wide_client_needs_allow_world(world):
    with pytest.raises(ExportsError, match="refusing to export /srv/x to every host"):
        parse_clients(["10.99.0.2", world], False, "/srv/x")
    assert [client.world for client in parse_clients(["10.99.0.2", world], True, "/srv/x")] == [False, True]


def test_a_client_given_twice_even_in_another_spelling_is_refused():
    with pytest.raises(ExportsError, match="client '10.99.0.0/24' is listed twice"):
        parse_clients(["10.99.0.0/24", "10.99.0.0/255.255.255.0"], False, "/srv/x")


@pytest.mark.parametrize(
    "options",
    [
        ["rw", "sync", "no_subtree_check", "no_root_squash"],
        ["ro", "async", "insecure", "all_squash", "anonuid=65534", "anongid=0"],
        ["rw", "sync", "fsid=root", "sec=krb5p:krb5i:sys", "crossmnt", "mp=/srv"],
        ["ro", "sync", "fsid=12", "nordirplus", "security_label", "no_wdelay"],
        ["ro", "sync", "fsid=6ba7b810-9dad-11d1-80b4-00c04fd430c8"],
        ["ro", "sync", "refer=/export@nfs1+nfs2:/other@nfs3", "mountpoint"],
    ],
)
def test_known_options_pass_in_their_order(options):
    assert validate_options(options) == ",".join(options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["rw", "ro"], "options ro and rw contradict each other: keep one"),
        (["sync", "async"], "options async and sync contradict each other"),
        (["root_squash", "no_root_squash"], "options no_root_squash and root_squash contradict each other"),
        (["all_squash", "no_all_squash"], "options all_squash and no_all_squash contradict each other"),
        (["secure", "insecure"], "options insecure and secure contradict each other"),
        (["nohide", "hide"], "options hide and nohide contradict each other"),
        (["mp", "mountpoint=/srv"], "options mountpoint and mp contradict each other"),
        (["rw", "rw"], "option 'rw' is given twice"),
        (["anonuid=1", "anonuid=2"], "option 'anonuid' is given twice"),
        (["rw", "no_root_sqash"], "option 'no_root_sqash' is unknown (see exports(5))"),
        (["rw=1"], "option 'rw=1' is unknown or takes no value"),
        (["anonuid=nobody"], "option 'anonuid=nobody' has an invalid value: a number from 0 to 4294967294"),
        (["anongid=-1"], "option 'anongid=-1' has an invalid value"),
        (["anonuid=4294967295"], "option 'anonuid=4294967295' has an invalid value"),
        (["fsid=abc"], "option 'fsid=abc' has an invalid value: root, a number or a UUID of 32 hex digits"),
        (["sec=sys:none"], "option 'sec=sys:none' has an invalid value: a colon-separated list of krb5"),
        (["sec=sys:sys"], "option 'sec=sys:sys' has an invalid value"),
        (["mountpoint=srv"], "option 'mountpoint=srv' has an invalid value: an absolute path"),
        (["refer=nfs1"], "option 'refer=nfs1' has an invalid value"),
        (["fsid=6ba7b810 9dad"], "option 'fsid=6ba7b810 9dad' is empty or holds a blank, comma"),
        (["refer=/a(x)@h"], "option 'refer=/a(x)@h' is empty or holds a blank, comma, parenthesis"),
        (["rw,sync"], "option 'rw,sync' is empty or holds a blank, comma"),
        (["rw", ""], "option '' is empty"),
        ([], "options must not be empty"),
    ],
)
def test_a_bad_option_list_is_refused_with_the_reason(options, message):
    with pytest.raises(ExportsError) as error:
        validate_options(options)
    assert message in str(error.value)


@pytest.mark.parametrize("path", ["srv/x", "/srv/x/", "/srv/../x", "/srv/./x", "//srv/x", "/srv//x", "/srv/x\n"])
def test_a_path_must_be_absolute_normalized_and_printable(path):
    with pytest.raises(ExportsError):
        validate_path(path)


def test_a_line_lists_each_client_with_its_options():
    entries = [Entry("10.99.0.2", RW), Entry("2001:db8::2", "ro,sync")]
    assert render_line("/srv/ferry-runc", entries) == f"/srv/ferry-runc 10.99.0.2({RW}) 2001:db8::2(ro,sync)"


def test_blanks_quotes_backslashes_and_hashes_in_a_path_are_written_as_octal():
    assert render_line('/srv/a b\t"c\\#d', [Entry("h", "ro")]) == "/srv/a\\040b\\011\\042c\\134\\043d h(ro)"


def test_the_managed_file_has_the_header_the_path_and_the_line():
    assert render_managed_file("/srv/x", [Entry("h", "ro")]) == (
        "# Managed by ferry.runc.nfs_export: edits here are overwritten; other exports live in other files.\n"
        "# export: /srv/x\n"
        "/srv/x h(ro)\n"
    )


@pytest.mark.parametrize("path", ["/srv/ferry-runc", '/srv/a b\t"c\\#d', "/"])
def test_parsing_a_rendered_file_gives_back_path_and_entries(path):
    entries = [Entry("10.99.0.2", RW), Entry("[x]", "ro"), Entry("*", "ro,all_squash")]
    assert parse_exports(render_managed_file(path, entries)) == [(path, entries)]


def test_parsing_handles_comments_continuations_quotes_defaults_and_bare_clients():
    text = (
        "# the host's exports\n"
        "\n"
        "/srv/www -sync,rw server @trusted(ro) \\\n"
        "    @external(ro,all_squash)   # read-only for them\n"
        '"/srv/with space" 192.0.2.0/24(rw)\n'
        "/pub (ro,insecure)\n"
        "/plain host\n"
    )
    assert parse_exports(text) == [
        ("/srv/www", [Entry("server", "sync,rw"), Entry("@trusted", "sync,rw,ro"), Entry("@external", "sync,rw,ro,all_squash")]),
        ("/srv/with space", [Entry("192.0.2.0/24", "rw")]),
        ("/pub", [Entry("*", "ro,insecure")]),
        ("/plain", [Entry("host", "")]),
    ]


def test_a_client_with_broken_parentheses_is_a_parse_error():
    with pytest.raises(ExportsError, match="cannot parse client 'host\\(rw' of export /srv/x"):
        parse_exports("/srv/x host(rw\n")


def test_the_file_name_is_readable_unique_and_an_exports_file():
    name = managed_file_name("/srv/ferry-runc")
    assert name.startswith("ferry-runc.srv_ferry-runc.") and name.endswith(".exports")
    assert managed_file_name("/srv/a_b") != managed_file_name("/srv/a/b")
    assert managed_file_name("/srv/a b").startswith("ferry-runc.srv_a_b.")
    assert managed_file_name("/").startswith("ferry-runc.root.")
    assert len(managed_file_name("/x" * 2000)) < 128


@pytest.mark.parametrize(
    ("old", "new", "commands"),
    [
        pytest.param([], [Entry("10.99.0.2", RW)], [[EXPORTFS, "-o", RW, "10.99.0.2:/p"]], id="first-export"),
        pytest.param([Entry("10.99.0.2", RW)], [Entry("10.99.0.2", RW)], [], id="nothing-changed"),
        pytest.param(
            [Entry("10.99.0.2", RW)],
            [Entry("10.99.0.2", RW), Entry("10.99.0.3", RW)],
            [[EXPORTFS, "-o", RW, "10.99.0.3:/p"]],
            id="added-client-only",
        ),
        pytest.param(
            [Entry("10.99.0.2", RW), Entry("2001:db8::3", RW)],
            [Entry("10.99.0.2", RW)],
            [[EXPORTFS, "-u", "[2001:db8::3]:/p"]],
            id="removed-client-only",
        ),
        pytest.param(
            [Entry("10.99.0.2", "ro,sync"), Entry("10.99.0.3", RW)],
            [Entry("10.99.0.2", RW), Entry("10.99.0.3", RW)],
            [[EXPORTFS, "-o", RW, "10.99.0.2:/p"]],
            id="changed-options-only-where-they-changed",
        ),
        pytest.param(
            [Entry("10.99.0.2", RW), Entry("@old", RW)],
            [],
            [[EXPORTFS, "-u", "10.99.0.2:/p", "@old:/p"]],
            id="all-gone",
        ),
        pytest.param(
            [Entry("10.99.0.2", RW)],
            [Entry("10.99.0.3", RW)],
            [[EXPORTFS, "-u", "10.99.0.2:/p"], [EXPORTFS, "-o", RW, "10.99.0.3:/p"]],
            id="replaced-unexports-first",
        ),
    ],
)
def test_exportfs_is_called_for_the_changed_entries_only(old, new, commands):
    assert exportfs_commands(EXPORTFS, "/p", old, new) == commands
