"""A small bundle of budgetd.v1 stubs for tests that talk to a real daemon."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from budgetd.v1 import budget_service_pb2_grpc, customer_service_pb2_grpc, spend_service_pb2_grpc
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.support.processes import ADMIN_TOKEN

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


@dataclass
class Stubs:
    """Stubs of every budgetd.v1 service on one channel."""

    channel: grpc.Channel
    spend: spend_service_pb2_grpc.SpendServiceStub
    customers: customer_service_pb2_grpc.CustomerServiceStub
    budgets: budget_service_pb2_grpc.BudgetServiceStub

    @classmethod
    def connect(cls, address: str) -> Stubs:
        """Open a channel to ``address``."""
        return cls.over(grpc.insecure_channel(address))

    @classmethod
    def over(cls, channel: grpc.Channel) -> Stubs:
        """Stubs on an open channel (a TLS one, say); :meth:`close` closes it."""
        return cls(
            channel,
            spend_service_pb2_grpc.SpendServiceStub(channel),
            customer_service_pb2_grpc.CustomerServiceStub(channel),
            budget_service_pb2_grpc.BudgetServiceStub(channel),
        )

    def ledger_sum(self, customer_id: str) -> tuple[int, int]:
        """(entries, sum of cost) over every page of a customer's ledger."""
        count = total = 0
        token = ""
        while True:
            page = self.spend.ListLedgerEntries(
                spend_pb.ListLedgerEntriesRequest(
                    customer_id=customer_id, page_size=1000, page_token=token
                ),
                metadata=ADMIN,
            )
            count += len(page.entries)
            total += sum(entry.cost_nanos for entry in page.entries)
            token = page.next_page_token
            if not token:
                return count, total

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()
