"""Handlers from the ``console.handlers`` entry-point group."""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest

from console import create_app
from console.handlers import plugins
from console.handlers.plugins import ENTRY_POINT_GROUP, HandlerPluginError
from console.jobs import JobStatus, TenantConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_processor"


@pytest.fixture
def app_config(app_config):
    """Plug-in discovery on: what these tests are about (the shared settings turn it off)."""
    return {**app_config, "JOBS_LOAD_PLUGINS": True}


def _fake_entry_points(monkeypatch, **targets):
    points = [EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
              for name, value in targets.items()]
    monkeypatch.setattr(plugins, "entry_points",
                        lambda group: points if group == ENTRY_POINT_GROUP else [])


def _build(app_config):
    app = create_app(app_config)
    app.extensions["jobs"].engine.dispose()
    return app.extensions["jobs"]


def test_a_class_or_an_instance_is_registered(app_config, monkeypatch):
    _fake_entry_points(monkeypatch, plugin_noop="tests.handlers.plugin_fixtures:PluginNoop")
    assert "plugin_noop" in _build(app_config).handlers
    _fake_entry_points(monkeypatch, plugin_noop="tests.handlers.plugin_fixtures:AN_INSTANCE")
    service = _build(app_config)
    from tests.handlers.plugin_fixtures import AN_INSTANCE
    assert service.handlers.get("plugin_noop") is AN_INSTANCE


def test_a_name_already_registered_is_skipped_with_a_warning(app_config, monkeypatch, caplog):
    _fake_entry_points(monkeypatch, noop="tests.handlers.plugin_fixtures:ClashesWithNoop")
    with caplog.at_level(logging.WARNING, logger="console.handlers.plugins"):
        service = _build(app_config)
    from console.handlers.basic import NoopHandler
    assert type(service.handlers.get("noop")) is NoopHandler
    assert "'noop'" in caplog.text and "already registered" in caplog.text
    assert "tests.handlers.plugin_fixtures:ClashesWithNoop" in caplog.text


@pytest.mark.parametrize("target, reason", [
    ("no_such_package.handlers:Thing", "ModuleNotFoundError"),
    ("tests.handlers.plugin_fixtures:Missing", "AttributeError"),
    ("tests.handlers.plugin_fixtures:NOT_A_HANDLER", "not a JobHandler"),
    ("tests.handlers.plugin_fixtures:NeedsArguments", "TypeError"),
])
def test_an_entry_point_that_cannot_be_loaded_stops_the_app(app_config, monkeypatch, target,
                                                            reason):
    _fake_entry_points(monkeypatch, broken=target)
    with pytest.raises(HandlerPluginError) as failure:
        create_app(app_config)
    message = str(failure.value)
    assert "'broken'" in message and target in message and reason in message


def test_plugins_can_be_turned_off(app_config, monkeypatch):
    _fake_entry_points(monkeypatch, broken="no_such_package:Thing",
                       plugin_noop="tests.handlers.plugin_fixtures:PluginNoop")
    service = _build({**app_config, "JOBS_LOAD_PLUGINS": False})     # the broken one is not read
    assert "plugin_noop" not in service.handlers and "noop" in service.handlers


@pytest.fixture
def installed_example(tmp_path_factory, monkeypatch):
    """examples/custom_processor pip-installed (not editable: its entry point metadata is real)
    into a folder of this test's own, put on sys.path: the environment, which another test run
    may be using at the same time, is left as it was. Built from a copy, so that the build
    leaves nothing in the source tree."""
    source = tmp_path_factory.mktemp("example") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                    "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True)
    monkeypatch.syspath_prepend(str(target))        # also invalidates the import caches
    try:
        yield
    finally:
        for name in [m for m in sys.modules if m.startswith("console_example_processor")]:
            del sys.modules[name]


@pytest.mark.slow
def test_the_example_plugin_is_discovered_after_pip_install(installed_example, app_config,
                                                            tmp_path):
    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert names.get("custom_data_processor") == (
        "console_example_processor.handlers:CustomDataProcessor")
    app = create_app(app_config)
    service = app.extensions["jobs"]
    try:
        handler = service.handlers.get("custom_data_processor")
        assert handler is not None and type(handler).__module__.startswith(
            "console_example_processor")
        service.tenants.set_tenant_config(TenantConfig.for_tier("acme", "Acme", "tier4"))
        progress = []
        service.job_updates.subscribe(
            lambda job: progress.append(job.progress_message) if job.progress_message else None)
        with pytest.raises(ValueError, match="payload"):
            service.queue_job("immediate", "custom_data_processor", {"data_id": "x"}, "acme")
        assert handler.estimate_execution_time({"processing_type": "deep"}).total_seconds() == 1800
        job = service.queue_job("immediate", "custom_data_processor",
                                {"data_id": "orders-2024-06", "processing_type": "quick",
                                 "step_ms": 50, "output_dir": str(tmp_path)}, "acme")
        service.run_until_idle(settle=0.3)
        done = service.get_job_by_id(job.id)
        assert done.status == JobStatus.COMPLETED, done.last_result
        assert done.last_result.result["processed_records"] == 500
        output = Path(done.last_result.result["output_file"])
        assert output.is_file() and output.parent.parent == tmp_path
        assert done.progress == 1.0
        assert "step 5 of 5" in progress
    finally:
        service.engine.dispose()
