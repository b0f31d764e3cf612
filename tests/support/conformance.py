"""For the type checker (tests/run/test_types.py runs mypy on this file): the real unit of work, the one a
keyless process gets, and the fake are all what the service layer is written against."""

from __future__ import annotations

from meldbot.core.ports import UnitOfWork, UnitOfWorkFactory
from meldbot.storage.uow import SqlUnitOfWork
from meldbot.storage.uow import UnitOfWorkFactory as SqlUnitOfWorkFactory
from tests.support.fakes import FakeStorage, FakeUnitOfWork


def real_unit(uow: SqlUnitOfWork) -> UnitOfWork:
    return uow


def real_factory(factory: SqlUnitOfWorkFactory) -> UnitOfWorkFactory:
    return factory


def fake_unit(uow: FakeUnitOfWork) -> UnitOfWork:
    return uow


def fake_factory(storage: FakeStorage) -> UnitOfWorkFactory:
    return storage
