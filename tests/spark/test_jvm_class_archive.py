"""The embedded JVM's class archive: built once at exit, checked before it is installed, used after.

The build test starts real JVMs in subprocesses (its own cache directory), so it neither uses
nor disturbs the archive of the session the rest of the suite runs in.
"""
import os
import shutil
import subprocess
import sys

import pytest

from simcit.config import SparkConfig
from simcit.jvm_class_archive import ClassArchive, java_binary
from simcit.spark_session import EMBEDDED_JVM_OPTIONS, embedded_class_archive

pytestmark = pytest.mark.spark

SESSION = r"""
from simcit.config import SparkConfig
from simcit.spark_session import get_spark
spark = get_spark(SparkConfig(master="local[1]"), "archive-test")
assert spark.range(100).count() == 100
jvm = spark.sparkContext._jvm
print("ARGS", " ".join(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()))
print("CLASSPATH", jvm.java.lang.System.getProperty("java.class.path"))
"""


def _session(cache: str) -> dict[str, str]:
    env = {**os.environ, "SIMCIT_CACHE_DIR": cache, "SIMCIT_JVM_CLASS_ARCHIVE": "1"}
    out = subprocess.run([sys.executable, "-c", SESSION], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("ARGS", "CLASSPATH")))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A first session writes the archive at exit; a second one starts from it."""
    cache = str(tmp_path_factory.mktemp("cache"))
    first = _session(cache)
    jvm_dir = os.path.join(cache, "jvm")
    archives = [f for f in os.listdir(jvm_dir) if f.endswith(".jsa")]
    second = _session(cache)
    return first, second, jvm_dir, archives


def test_the_first_session_writes_the_archive_and_the_next_one_maps_it(built):
    first, second, jvm_dir, archives = built
    assert len(archives) == 1 and os.listdir(jvm_dir) == archives  # installed, nothing half-written left
    path = os.path.join(jvm_dir, archives[0])
    assert f"-XX:ArchiveClassesAtExit={path}." in first["ARGS"]
    assert f"-XX:SharedArchiveFile={path}" in second["ARGS"]
    archive = ClassArchive(jvm_dir, "x", java_binary(), EMBEDDED_JVM_OPTIONS)
    assert archive.mappable(path, second["CLASSPATH"])  # -Xshare:on: fails rather than fall back


def test_a_truncated_archive_is_never_installed(built, tmp_path):
    _, second, jvm_dir, archives = built
    archive = ClassArchive(str(tmp_path), "k", java_binary(), EMBEDDED_JVM_OPTIONS)
    archive.java_options()  # no archive yet: this process would build one
    with open(os.path.join(jvm_dir, archives[0]), "rb") as src, open(archive.building_path, "wb") as dst:
        dst.write(src.read(1_000_000))  # what a JVM killed while dumping leaves behind

    class Stopped:
        def stop(self):
            pass

    class ExitedJVM:
        stdin = None

        def wait(self, timeout):
            return 0

    archive._install(Stopped(), ExitedJVM(), second["CLASSPATH"])  # the atexit hook
    assert not os.path.exists(archive.path) and not os.path.exists(archive.building_path)


def test_abandoned_partial_archives_are_removed_live_ones_kept(tmp_path):
    archive = ClassArchive(str(tmp_path), "k", shutil.which("java") or "java", EMBEDDED_JVM_OPTIONS)
    dead = f"{archive.path}.999999999.tmp"
    live = f"{archive.path}.{os.getppid()}.tmp"
    for f in (dead, live):
        open(f, "wb").close()
    options = archive.java_options()
    assert options.startswith(f"-XX:ArchiveClassesAtExit={archive.path}.{os.getpid()}.tmp")
    assert not os.path.exists(dead) and os.path.exists(live)


def test_the_archive_is_keyed_on_jvm_options_and_can_be_turned_off(tmp_path, monkeypatch):
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no java")
    monkeypatch.setenv("SIMCIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SIMCIT_JVM_CLASS_ARCHIVE", "1")
    default = embedded_class_archive(SparkConfig())
    assert default is not None and os.path.dirname(default.path) == os.path.join(str(tmp_path), "jvm")
    assert embedded_class_archive(SparkConfig()).path == default.path  # stable name
    assert embedded_class_archive(SparkConfig(driver_memory="2g")).path != default.path
    assert embedded_class_archive(SparkConfig(class_archive=False)) is None
    assert embedded_class_archive(SparkConfig(conf={"spark.driver.extraJavaOptions": "-Xss4m"})) is None
    monkeypatch.setenv("SIMCIT_JVM_CLASS_ARCHIVE", "0")
    assert embedded_class_archive(SparkConfig()) is None
