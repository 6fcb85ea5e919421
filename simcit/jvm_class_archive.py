"""A class-data-sharing (AppCDS) archive for the embedded Spark JVM: faster start-ups.

Why: before an embedded (local) Spark session runs its first job, the JVM spends most of its
time loading, parsing and verifying Spark's classes (~5 s on 2 cores, and ~2 s more in the first
job). A dynamic CDS archive holds those classes pre-parsed and pre-verified and the JVM maps it:
session start 5.3 s -> 2.5 s, first job 2.7 s -> 1.0 s (assign-ids at 1M rows: 41 s -> 36 s,
benchmarks/RESULTS.md §2). Every stage run from the command line and every test pays the JVM
start, so this is the single largest fixed cost of a short job.

How: the first embedded session of an installation starts with ``-XX:ArchiveClassesAtExit=<tmp>``
(its start is ~3 s slower). When that Python process exits, an ``atexit`` hook stops Spark, waits
for the JVM to write the archive (~10 s, once), checks that a JVM maps it (``-Xshare:on ...
-version``) and only then renames it into place, atomically: a truncated archive crashes the
JVM (SIGBUS while mapping), so nothing unchecked is ever installed. Later sessions start with
``-XX:SharedArchiveFile=<archive>``. The archive's name hashes the java binary, the Spark jars
and the JVM options, so upgrading either builds a new one; if the JVM still rejects an archive
it falls back to normal class loading (``-Xshare:auto``). ``python -m simcit.jvm_class_archive``
builds it ahead of time (``make setup`` does).

Where: ``$SIMCIT_CACHE_DIR/jvm`` (default ``~/.cache/simcit/jvm``), ~150 MB per archive. Off:
``spark.class_archive: false`` in the config or ``SIMCIT_JVM_CLASS_ARCHIVE=0``. Only the
embedded JVM: under ``spark-submit`` the JVM is already running when our code starts.
"""
from __future__ import annotations

import atexit
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

LOG_OFF = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")  # no archive warnings in the job's output
SWITCH = "SIMCIT_JVM_CLASS_ARCHIVE"


def enabled_by_environment() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> str:
    root = os.environ.get("SIMCIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "simcit")
    return os.path.join(root, "jvm")


def java_binary() -> str | None:
    """The java that ``spark-submit`` will run: ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return os.path.realpath(java) if java and os.path.exists(java) else None


def _spark_home() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return os.path.realpath(_find_spark_home())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ClassArchive:
    """The archive of one (java, Spark jars, JVM options) combination."""

    def __init__(self, directory: str, key: str, java: str, jvm_options: str):
        self.path = os.path.join(directory, f"spark-{key}.jsa")
        self.java = java
        self.jvm_options = jvm_options
        self.building_path: str | None = None

    @classmethod
    def for_embedded_spark(cls, jvm_options: str, driver_memory: str) -> "ClassArchive | None":
        """None when there is nothing to do it with (no java found, cache not writable)."""
        java = java_binary()
        if java is None:
            return None
        try:
            spark_home = _spark_home()
            jars = sorted((e.name, e.stat().st_size) for e in os.scandir(os.path.join(spark_home, "jars")))
        except Exception:  # noqa: BLE001  (no Spark installation to key on: run without)
            return None
        st = os.stat(java)
        ident = repr((java, st.st_size, st.st_mtime_ns, spark_home, jars, jvm_options, driver_memory))
        directory = cache_dir()
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError:
            return None
        if not os.access(directory, os.W_OK):
            return None
        return cls(directory, hashlib.sha1(ident.encode()).hexdigest()[:16], java, jvm_options)

    @property
    def exists(self) -> bool:
        return os.path.isfile(self.path)

    def java_options(self) -> str:
        """Options to start the JVM with: use the archive, or write one at exit."""
        if self.exists:
            return " ".join([f"-XX:SharedArchiveFile={self.path}", *LOG_OFF])
        self._remove_abandoned()
        self.building_path = f"{self.path}.{os.getpid()}.tmp"
        return " ".join([f"-XX:ArchiveClassesAtExit={self.building_path}", *LOG_OFF])

    def _remove_abandoned(self) -> None:
        """Half-written archives of processes that died before installing theirs."""
        for tmp in glob.glob(f"{self.path}.*.tmp"):
            try:
                pid = int(tmp.rsplit(".", 2)[-2])
            except ValueError:
                continue
            if not _pid_alive(pid):
                try:
                    os.remove(tmp)
                except OSError:
                    pass

    def install_at_exit(self, spark) -> None:
        """After a session started with :meth:`java_options` while building: when this process
        exits, let the JVM write the archive, check it and move it into place."""
        if self.building_path is None:
            return
        classpath = spark.sparkContext._jvm.java.lang.System.getProperty("java.class.path")
        proc = spark.sparkContext._gateway.proc
        atexit.register(self._install, spark, proc, classpath)

    def _install(self, spark, proc, classpath: str) -> None:
        tmp = self.building_path
        print(f"[spark] writing the JVM class archive for faster start-ups (once; ~10 s): {self.path}",
              file=sys.stderr, flush=True)
        try:
            spark.stop()
        except Exception:  # noqa: BLE001  (already stopped or the JVM is gone)
            pass
        try:
            if proc.stdin:
                proc.stdin.close()  # the gateway JVM exits when its stdin closes; it dumps then
            rc = proc.wait(timeout=300)
        except Exception:  # noqa: BLE001  (timeout, or no process to wait for)
            rc = None
        if rc == 0 and os.path.isfile(tmp) and self.mappable(tmp, classpath):
            os.replace(tmp, self.path)
        else:
            print(f"[spark] no JVM class archive written (JVM exit {rc}); start-ups stay as they are",
                  file=sys.stderr, flush=True)
            try:
                os.remove(tmp)
            except OSError:
                pass

    def mappable(self, archive: str, classpath: str) -> bool:
        """Whether a JVM with this classpath and these options maps ``archive`` (``-Xshare:on``
        fails instead of falling back; a truncated file crashes that JVM, not ours)."""
        with tempfile.TemporaryDirectory() as scratch:
            cmd = [self.java, "-cp", classpath, *self.jvm_options.split(), f"-XX:SharedArchiveFile={archive}",
                   "-Xshare:on", *LOG_OFF, f"-XX:ErrorFile={scratch}/hs_err_%p.log", "-version"]
            try:
                return subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                return False


def build() -> int:
    """Build the archive for the default embedded session now (no-op when it exists): a session
    with a small job of each kind the stages run (Python workers, shuffle + window, Parquet)."""
    from simcit.config import SparkConfig
    from simcit.spark_session import embedded_class_archive, get_spark

    archive = embedded_class_archive(SparkConfig())
    if archive is None:
        print(f"no JVM class archive: disabled ({SWITCH}=0), no java, or {cache_dir()} not writable")
        return 0
    if archive.exists:
        print(f"JVM class archive present: {archive.path}")
        return 0
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = get_spark(SparkConfig(), "simcit-class-archive")
    df = spark.range(0, 20000, 1, 2).withColumn("g", F.col("id") % 97)
    df = df.mapInArrow(lambda batches: batches, df.schema)
    df = df.withColumn("r", F.row_number().over(Window.partitionBy("g").orderBy("id")))
    with tempfile.TemporaryDirectory() as scratch:
        df.withColumn("s", F.concat(F.lit("<a_"), F.col("r").cast("string"), F.lit(">"))).write.parquet(scratch + "/t")
        spark.read.parquet(scratch + "/t").groupBy("g").agg(F.count(F.lit(1))).collect()
    print(f"JVM class archive: written when this process exits: {archive.path}")
    return 0


if __name__ == "__main__":
    sys.exit(build())
