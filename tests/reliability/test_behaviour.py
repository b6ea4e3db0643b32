"""Behaviour preservation: regressions found by running third-party suites instrumented."""

from __future__ import annotations

import random
import warnings

from usagetrace.testing import capture

FRAMES = {
    "__init__.py": """
        import sys, warnings

        def make_thing(name):
            '''Like collections.namedtuple: the caller's module names the result.'''
            return (name, sys._getframe(1).f_globals["__name__"])

        def old_api():
            warnings.warn("old_api is deprecated", DeprecationWarning, stacklevel=2)
            return 1

        class Point:
            @classmethod
            def here(cls, level=1):
                return sys._getframe(level).f_code.co_name

        def plain(x):
            return x * 2
    """
}


def test_functions_reading_the_callers_frame_see_the_real_caller(packages):
    """Functions using sys._getframe(1) or warn(stacklevel=2) see the host's frame, not a wrapper's."""
    pkg = packages.load("rel_frames_pkg", FRAMES)
    with capture("rel_frames_pkg") as cap:
        assert pkg.make_thing("a") == ("a", __name__)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert pkg.old_api() == 1
        assert caught[0].filename == __file__
        assert pkg.Point.here() == "test_functions_reading_the_callers_frame_see_the_real_caller"
        assert pkg.plain(2) == 4
    assert cap.calls("rel_frames_pkg.plain") == 1  # the rest of the package is still instrumented


def test_span_ids_do_not_consume_the_hosts_random_sequence(packages):
    """Making and exporting spans leaves the global random sequence a host seeded untouched."""
    pkg = packages.load("rel_random_pkg", {"__init__.py": "def f(x):\n    return x + 1\n"})
    random.seed(1234)
    expected = [random.random() for _ in range(5)]
    random.seed(1234)
    with capture("rel_random_pkg") as cap:
        for i in range(20):
            pkg.f(i)
        assert cap.flush()
        assert cap.spans("rel_random_pkg.f")  # spans (with random ids) were made
    assert [random.random() for _ in range(5)] == expected
