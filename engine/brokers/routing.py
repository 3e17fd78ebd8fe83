"""Which broker a strategy's orders go to: its trading mode and its named account.

- SIMULATION: the simulated broker, one book per account.
- PAPER: Alpaca paper with the account's paper keys.
- LIVE: Alpaca live with the account's live keys, and only when live trading is allowed
  (``TRADEFLOW_ALLOW_LIVE=yes``): both opt-ins or nothing.
- VALIDATION: no broker; the orders are stored and never sent.

Every refusal happens here, before any network call, and says what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from engine.brokers.base import Broker
from engine.errors import ExecutionRefusedError

ALLOW_LIVE_ENV = "TRADEFLOW_ALLOW_LIVE"
ACCOUNTS_ENV = "TRADEFLOW_ACCOUNTS"  # named accounts besides "default", comma-separated
# The broker name stored with a strategy's orders, by its trading mode.
BROKER_NAMES = {
    "SIMULATION": "simulated",
    "PAPER": "alpaca-paper",
    "LIVE": "alpaca-live",
    "VALIDATION": "validation",
}


def account_names(environ: Mapping[str, str]) -> list[str]:
    """``default`` and the accounts named in TRADEFLOW_ACCOUNTS."""
    named = [n.strip() for n in environ.get(ACCOUNTS_ENV, "").split(",") if n.strip()]
    return ["default", *(n for n in named if n != "default")]


def key_variables(account: str, mode: str) -> tuple[str, str]:
    """The environment variables that hold an account's keys for PAPER or LIVE."""
    prefix = "ALPACA" if account == "default" else f"ALPACA_{account.upper().replace('-', '_')}"
    return f"{prefix}_{mode}_API_KEY", f"{prefix}_{mode}_SECRET_KEY"


def live_allowed(value: str | None) -> bool:
    return (value or "").strip().lower() == "yes"


@dataclass(frozen=True)
class AlpacaKeys:
    api_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    base_url: str | None = None

    @property
    def complete(self) -> bool:
        return bool(self.api_key and self.secret_key)


@dataclass(frozen=True)
class AccountSettings:
    paper: AlpacaKeys = AlpacaKeys()
    live: AlpacaKeys = AlpacaKeys()


@dataclass(frozen=True)
class AlpacaSettings:
    timeout_seconds: float = 10.0
    retries: int = 4
    requests_per_minute: float = 200.0


class BrokerRouter:
    """The broker of each (trading mode, account), made once and reused."""

    def __init__(
        self,
        accounts: dict[str, AccountSettings],
        simulated: Callable[[str], Broker],
        allow_live: bool = False,
        alpaca: AlpacaSettings = AlpacaSettings(),
    ) -> None:
        self.accounts = accounts
        self._simulated = simulated
        self.allow_live = allow_live
        self._alpaca = alpaca
        self._made: dict[tuple[str, str], Broker] = {}

    def check(self, strategy_id: str, mode: str, account: str) -> None:
        """Refuse, naming what is missing, unless orders of this strategy can be routed."""
        where = f"strategy {strategy_id} trades in {mode} mode in account {account!r}"
        if mode == "VALIDATION":
            return
        if account not in self.accounts:
            known = ", ".join(sorted(self.accounts)) or "none"
            raise ExecutionRefusedError(
                f"{where}, which is not configured (accounts: {known}); add it to "
                "TRADEFLOW_ACCOUNTS and export its keys"
            )
        if mode == "SIMULATION":
            return
        keys = self.accounts[account].paper if mode == "PAPER" else self.accounts[account].live
        missing = []
        if not keys.complete:
            missing.append(" and ".join(key_variables(account, mode)))
        if mode == "LIVE" and not self.allow_live:
            missing.append(f"{ALLOW_LIVE_ENV}=yes")
        if missing:
            raise ExecutionRefusedError(
                f"{where}, which needs {'; and '.join(missing)} (nothing was sent)"
            )

    def broker(self, mode: str, account: str) -> Broker:
        """The broker of (mode, account); ``check`` it first."""
        if (mode, account) not in self._made:
            self.check("?", mode, account)
            if mode == "SIMULATION":
                self._made[mode, account] = self._simulated(account)
            elif mode in ("PAPER", "LIVE"):
                from engine.brokers.alpaca import AlpacaBroker  # alpaca-py: when first routed

                keys = (
                    self.accounts[account].paper if mode == "PAPER" else self.accounts[account].live
                )
                self._made[mode, account] = AlpacaBroker(
                    api_key=str(keys.api_key),
                    secret_key=str(keys.secret_key),
                    paper=mode == "PAPER",
                    account_name=account,
                    base_url=keys.base_url,
                    timeout_seconds=self._alpaca.timeout_seconds,
                    retries=self._alpaca.retries,
                    requests_per_minute=self._alpaca.requests_per_minute,
                )
            else:
                raise ValueError(f"{mode} strategies have no broker")
        return self._made[mode, account]
