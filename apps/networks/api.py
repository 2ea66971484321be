"""The networks API: /api/v1/networks/ (CRUD, start/stop/autostart, live leases and DNS entries, attached
VMs, NIC choices of a host) and /api/v1/host-interfaces/ (read-only)."""

from __future__ import annotations

from django.http import QueryDict
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied
from rest_framework.response import Response

from apps import virt
from apps.core.api import RestrictedQuerysetMixin
from apps.core.choices import Action
from apps.core.permissions import restrict
from apps.hosts.models import Host
from apps.vms.models import VirtualMachine

from . import services
from .filters import HostInterfaceFilterSet, NetworkFilterSet
from .models import HostInterface, Network


class NetworkSerializer(serializers.ModelSerializer):
    """A virtual network as mirrored from libvirt."""

    host_name = serializers.CharField(source="host.name", read_only=True)
    subnets = serializers.ListField(child=serializers.CharField(), read_only=True)
    attached_vm_count = serializers.SerializerMethodField()

    class Meta:
        model = Network
        fields = [
            "id",
            "uuid",
            "name",
            "host",
            "host_name",
            "team",
            "active",
            "persistent",
            "autostart",
            "forward_mode",
            "forward_dev",
            "forward_dev_present",
            "bridge",
            "subnets",
            "ips",
            "domain_name",
            "details",
            "leases",
            "xml",
            "attached_vm_count",
            "gone",
            "updated",
        ]
        read_only_fields = fields

    def get_attached_vm_count(self, obj) -> int:
        """How many VMs use the network (from the page's counts when listing)."""
        counts = self.context.get("attached_counts")
        if counts is not None:
            return counts.get(obj.pk, 0)
        return len(services.attached_vms(obj))


class LeaseSerializer(serializers.Serializer):
    """A static DHCP lease: a MAC (IPv4) or a host name, and an address."""

    mac = serializers.CharField(required=False, allow_blank=True, default="")
    name = serializers.CharField(required=False, allow_blank=True, default="")
    ip = serializers.CharField()


class DnsHostSerializer(serializers.Serializer):
    """A DNS entry: an address and its host names."""

    ip = serializers.CharField()
    hostnames = serializers.ListField(child=serializers.CharField())


class NetworkWriteSerializer(serializers.Serializer):
    """What a client sends to create or change a network; checked by the same code as the form."""

    host = serializers.PrimaryKeyRelatedField(queryset=Host.objects.none(), required=False)
    name = serializers.CharField(max_length=64)
    mode = serializers.ChoiceField(choices=list(virt.NETWORK_MODES), default="isolated")
    forward_dev = serializers.CharField(required=False, allow_blank=True, default="")
    forward_devices = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    nat_start = serializers.CharField(required=False, allow_blank=True, default="")
    nat_end = serializers.CharField(required=False, allow_blank=True, default="")
    nat_port_start = serializers.IntegerField(required=False, allow_null=True, default=None)
    nat_port_end = serializers.IntegerField(required=False, allow_null=True, default=None)
    bridge = serializers.CharField(required=False, allow_blank=True, default="")
    stp = serializers.BooleanField(required=False, default=True)
    delay = serializers.IntegerField(required=False, allow_null=True, default=0)
    mtu = serializers.IntegerField(required=False, allow_null=True, default=None)
    domain_name = serializers.CharField(required=False, allow_blank=True, default="")
    dns_local_only = serializers.BooleanField(required=False, default=False)
    dns_forwarders = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    dns_hosts = DnsHostSerializer(many=True, required=False, default=list)
    ipv4_address = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="192.168.100.1/24"
    )
    ipv4_dhcp_start = serializers.CharField(required=False, allow_blank=True, default="")
    ipv4_dhcp_end = serializers.CharField(required=False, allow_blank=True, default="")
    ipv4_leases = LeaseSerializer(many=True, required=False, default=list)
    ipv6_address = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="fd00:100::1/64"
    )
    ipv6_dhcp_start = serializers.CharField(required=False, allow_blank=True, default="")
    ipv6_dhcp_end = serializers.CharField(required=False, allow_blank=True, default="")
    ipv6_leases = LeaseSerializer(many=True, required=False, default=list)
    start = serializers.BooleanField(required=False, default=True, write_only=True)
    autostart = serializers.BooleanField(required=False, default=False, write_only=True)

    def get_fields(self):
        """The fields, with `host` limited to the hosts the user may add networks to."""
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None:
            fields["host"].queryset = restrict(Host.objects.all(), request.user, Action.ADD)
        return fields

    def validate(self, attrs):
        """Run the form's checks (clean_network_data) on the values; per-field errors as a 400."""
        instance = self.context.get("instance")
        host = instance.host if instance is not None else attrs.get("host")
        if host is None:
            raise serializers.ValidationError({"host": ["Choose the host to define the network on."]})
        data = {k: v for k, v in attrs.items() if k not in ("host", "start", "autostart")}
        if instance is not None:
            data["name"] = instance.name
        try:
            result = services.validate(host, data, instance=instance)
        except services.NetworkInputError as exc:
            raise serializers.ValidationError(exc.errors) from exc
        attrs["warnings"] = result.warnings
        attrs["data"] = data
        return attrs


class ActionResultSerializer(serializers.Serializer):
    """A network after a change, with any warnings."""

    detail = serializers.CharField()
    warnings = serializers.ListField(child=serializers.CharField())
    network = NetworkSerializer()


def _result(network: Network, detail: str, warnings=(), code=status.HTTP_200_OK) -> Response:
    """The changed network with a message and any warnings (ActionResultSerializer's shape)."""
    body = {"detail": detail, "warnings": list(warnings), "network": NetworkSerializer(network).data}
    return Response(body, status=code)


def _input_error(exc: services.NetworkInputError) -> Response:
    """A 400 with the first message as `detail` and every message by field under `errors`."""
    return Response({"detail": exc.message, "errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)


def _body(request) -> dict:
    """The request body as a plain dict (a form's repeated keys become lists); 400 unless it is an object."""
    data = request.data
    if isinstance(data, QueryDict):
        return {key: values[0] if len(values) == 1 else values for key, values in data.lists()}
    if not isinstance(data, dict):
        raise ParseError("Send a JSON object.")
    return dict(data)


def _with_name(request, name: str):
    """The body of a network update with the network's own name (a form stays a QueryDict, so that its
    list fields keep their repeated keys)."""
    if isinstance(request.data, QueryDict):
        data = request.data.copy()
        data["name"] = name
        return data
    return {**_body(request), "name": name}


def _handle_network_errors(exc):
    """Input errors as 400 with per-field messages; a network or VM gone from its host as 404."""
    if isinstance(exc, services.NetworkInputError):
        return _input_error(exc)
    if isinstance(exc, virt.NotFound):
        return Response({"detail": exc.message}, status=status.HTTP_404_NOT_FOUND)
    return None


class NetworkViewSet(RestrictedQuerysetMixin, viewsets.ModelViewSet):
    """Virtual networks of every host the user may see. Admins create, change and delete them;
    operators start and stop them."""

    queryset = Network.objects.select_related("host").order_by("name", "pk")
    serializer_class = NetworkSerializer
    filterset_class = NetworkFilterSet
    filter_backends = [DjangoFilterBackend]
    http_method_names = ["get", "post", "put", "delete", "head", "options"]

    def get_serializer_class(self):
        """The write serializer for create and update, the read one otherwise."""
        if self.action in ("create", "update"):
            return NetworkWriteSerializer
        return NetworkSerializer

    def get_serializer_context(self):
        """The context, with the attached-VM counts of the listed page (one query per host)."""
        context = super().get_serializer_context()
        if self.action == "list":
            page = getattr(self, "_page", None)
            if page is not None:
                context["attached_counts"] = services.attached_counts(page)
        return context

    def paginate_queryset(self, queryset):
        """The page, kept so that the counts of its networks are read at once."""
        self._page = super().paginate_queryset(queryset)
        return self._page

    @extend_schema(request=NetworkWriteSerializer, responses={201: ActionResultSerializer})
    def create(self, request, *args, **kwargs):
        """Define a network on a host the user administers (404 unseen host, 403 not an admin)."""
        host_id = str(_body(request).get("host", ""))
        if host_id.isdigit():
            host = restrict(Host.objects.all(), request.user).filter(pk=host_id).first()
            if host is None:
                raise NotFound("No host matches the given query.")
            if not restrict(Host.objects.filter(pk=host.pk), request.user, Action.ADD).exists():
                raise PermissionDenied(f"You may not add networks to host {host.name}.")
        serializer = NetworkWriteSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        attrs = serializer.validated_data
        network, warnings = services.create_network(
            request.user,
            attrs["host"],
            attrs["data"],
            start=attrs["start"],
            autostart=attrs["autostart"],
            request=request,
        )
        return _result(network, f"Network {network.name} created.", warnings, status.HTTP_201_CREATED)

    @extend_schema(request=NetworkWriteSerializer, responses={200: ActionResultSerializer})
    def update(self, request, *args, **kwargs):
        """Redefine a network with new settings (its name cannot change)."""
        network = self.get_object()
        if network.gone:
            return Response({"detail": "This network no longer exists on its host."}, status=404)
        serializer = NetworkWriteSerializer(
            data=_with_name(request, network.name), context={"request": request, "instance": network}
        )
        serializer.is_valid(raise_exception=True)
        network, warnings = services.update_network(
            request.user, network, serializer.validated_data["data"], request=request
        )
        return _result(network, f"Network {network.name} saved.", warnings)

    @extend_schema(
        parameters=[
            OpenApiParameter("force", OpenApiTypes.BOOL, description="Delete although running VMs use it")
        ],
        responses={204: None, 409: OpenApiTypes.OBJECT},
    )
    def destroy(self, request, *args, **kwargs):
        """Stop and delete a network; 409 while running VMs use it unless ?force=true."""
        network = self.get_object()
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        try:
            services.delete_network(request.user, network, force=force, request=request)
        except services.NetworkInUse as exc:
            return Response(
                {"detail": exc.message, "vms": [{"id": vm.pk, "name": vm.name} for vm in exc.vms]},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _act(self, request, name: str):
        network = self.get_object()
        network = services.network_action(request.user, network, name, request=request)
        return _result(network, f"{services.NETWORK_ACTIONS[name]} {network.name}: done.")

    @extend_schema(request=None, responses={200: ActionResultSerializer})
    @action(detail=True, methods=["post"], required_action=Action.OPERATE)
    def start(self, request, pk=None):
        """Start the network."""
        return self._act(request, "start")

    @extend_schema(request=None, responses={200: ActionResultSerializer})
    @action(detail=True, methods=["post"], required_action=Action.OPERATE)
    def stop(self, request, pk=None):
        """Stop the network (VMs on it lose their link)."""
        return self._act(request, "stop")

    @extend_schema(
        request=inline_serializer("AutostartRequest", {"autostart": serializers.BooleanField()}),
        responses={200: ActionResultSerializer},
    )
    @action(detail=True, methods=["post"], required_action=Action.CHANGE)
    def autostart(self, request, pk=None):
        """Set whether the network starts with libvirtd."""
        value = _body(request).get("autostart")
        if not isinstance(value, bool):
            return Response({"detail": 'Send {"autostart": true} or false.'}, status=400)
        return self._act(request, "autostart-on" if value else "autostart-off")

    @extend_schema(request=None, responses={200: ActionResultSerializer})
    @action(detail=True, methods=["post"], required_action=Action.OPERATE)
    def refresh(self, request, pk=None):
        """Re-read the network (and its current DHCP leases) from libvirt."""
        network = services.refresh_network(self.get_object())
        return _result(network, f"{network.name} refreshed.")

    @extend_schema(
        request=inline_serializer(
            "LeaseRequest",
            {
                "family": serializers.ChoiceField(choices=["ipv4", "ipv6"], default="ipv4"),
                "mac": serializers.CharField(required=False),
                "name": serializers.CharField(required=False),
                "ip": serializers.CharField(),
            },
        ),
        responses={200: ActionResultSerializer},
    )
    @action(detail=True, methods=["post"], url_path="leases", required_action=Action.CHANGE)
    def add_lease(self, request, pk=None):
        """Add a static DHCP lease, applied live (no restart)."""
        network = self.get_object()
        data = _body(request)
        family = data.get("family") or ("ipv6" if ":" in str(data.get("ip", "")) else "ipv4")
        network = services.add_lease(request.user, network, family, data, request=request)
        return _result(network, f"Static lease of {data.get('ip')} added.")

    @extend_schema(
        request=inline_serializer("LeaseRemoveRequest", {"ip": serializers.CharField()}),
        responses={200: ActionResultSerializer},
    )
    @action(detail=True, methods=["post"], url_path="leases/remove", required_action=Action.CHANGE)
    def remove_lease(self, request, pk=None):
        """Remove the static lease of an address, applied live."""
        network = self.get_object()
        ip = str(_body(request).get("ip", ""))
        network = services.remove_lease(
            request.user, network, "ipv6" if ":" in ip else "ipv4", ip, request=request
        )
        return _result(network, f"Static lease of {ip} removed.")

    @extend_schema(request=DnsHostSerializer, responses={200: ActionResultSerializer})
    @action(detail=True, methods=["post"], url_path="dns-hosts", required_action=Action.CHANGE)
    def add_dns_host(self, request, pk=None):
        """Add a DNS entry, applied live."""
        network = self.get_object()
        data = _body(request)
        network = services.add_dns_host(request.user, network, data, request=request)
        return _result(network, f"DNS entry for {data.get('ip')} added.")

    @extend_schema(
        request=inline_serializer("DnsRemoveRequest", {"ip": serializers.CharField()}),
        responses={200: ActionResultSerializer},
    )
    @action(detail=True, methods=["post"], url_path="dns-hosts/remove", required_action=Action.CHANGE)
    def remove_dns_host(self, request, pk=None):
        """Remove the DNS entry of an address, applied live."""
        network = self.get_object()
        ip = str(_body(request).get("ip", ""))
        network = services.remove_dns_host(request.user, network, ip, request=request)
        return _result(network, f"DNS entry for {ip} removed.")

    @extend_schema(
        responses={
            200: inline_serializer(
                "AttachedVm",
                {
                    "id": serializers.IntegerField(),
                    "name": serializers.CharField(),
                    "state": serializers.CharField(),
                },
                many=True,
            )
        }
    )
    @action(detail=True, methods=["get"])
    def vms(self, request, pk=None):
        """The VMs (that the user may see) with a NIC on this network."""
        from apps.vms.models import VirtualMachine

        network = self.get_object()
        vms = services.attached_vms(network, restrict(VirtualMachine.objects.all(), request.user))
        return Response([{"id": vm.pk, "name": vm.name, "state": vm.state} for vm in vms])

    @extend_schema(
        parameters=[OpenApiParameter("host", OpenApiTypes.INT, required=True)],
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=False, methods=["get"], url_path="nic-choices")
    def nic_choices(self, request):
        """What a VM NIC on a host may connect to: its networks, bridges and macvtap-able interfaces."""
        host_id = request.query_params.get("host", "")
        host = (
            restrict(Host.objects.all(), request.user).filter(pk=host_id).first()
            if host_id.isdigit()
            else None
        )
        if host is None:
            return Response({"detail": "Give ?host=<id> of a host you may see."}, status=404)
        return Response(services.nic_choices(host))

    def handle_exception(self, exc):
        """Network input errors as 400 with per-field messages, objects gone as 404."""
        return _handle_network_errors(exc) or super().handle_exception(exc)


class HostInterfaceSerializer(serializers.ModelSerializer):
    """A host's network interface (read-only)."""

    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = HostInterface
        fields = [
            "id",
            "host",
            "host_name",
            "name",
            "kind",
            "mac",
            "state",
            "mtu",
            "bridge",
            "members",
            "addresses",
            "routes",
            "updated",
        ]
        read_only_fields = fields


class HostInterfaceViewSet(RestrictedQuerysetMixin, viewsets.ReadOnlyModelViewSet):
    """The network interfaces of the hosts the user may see, as last read through libvirt."""

    queryset = HostInterface.objects.select_related("host").order_by("host__name", "name")
    serializer_class = HostInterfaceSerializer
    filterset_class = HostInterfaceFilterSet
    filter_backends = [DjangoFilterBackend]


class NicChangeSerializer(serializers.Serializer):
    """A NIC change: applied to the running VM now (`live`) and/or its saved definition (`config`)."""

    live = serializers.BooleanField()
    config = serializers.BooleanField()
    detail = serializers.CharField()


class VmNicViewSet(RestrictedQuerysetMixin, viewsets.GenericViewSet):
    """A VM's NICs: list them with what they may connect to, set link state (operators), connect them to
    a network, bridge or macvtap device (admins), reserve a NIC's address on its network."""

    queryset = VirtualMachine.objects.select_related("host").order_by("pk")
    serializer_class = NicChangeSerializer

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def retrieve(self, request, pk=None):
        """The VM's NICs and the host's NIC choices."""
        vm = self.get_object()
        return Response({"nics": vm.nics, "choices": services.nic_choices(vm.host)})

    def _change(self, request, **kwargs) -> Response:
        vm = self.get_object()
        mac = str(_body(request).get("mac", ""))
        change = services.set_vm_nic(request.user, vm, mac, request=request, **kwargs)
        detail = (
            "Changed now." if change.live else f"Saved; applies at the next boot. {change.detail}".strip()
        )
        return Response({"live": change.live, "config": change.config, "detail": detail})

    @extend_schema(
        request=inline_serializer(
            "NicLinkRequest", {"mac": serializers.CharField(), "up": serializers.BooleanField()}
        ),
        responses={200: NicChangeSerializer},
    )
    @action(detail=True, methods=["post"], required_action=Action.OPERATE)
    def link(self, request, pk=None):
        """Plug a NIC's virtual cable in (up) or out (down)."""
        up = _body(request).get("up")
        if not isinstance(up, bool):
            return Response({"detail": 'Send {"mac": ..., "up": true} or false.'}, status=400)
        return self._change(request, link_up=up)

    @extend_schema(
        request=inline_serializer(
            "NicConnectRequest",
            {
                "mac": serializers.CharField(),
                "kind": serializers.ChoiceField(choices=["network", "bridge", "direct"]),
                "source": serializers.CharField(),
                "mode": serializers.ChoiceField(
                    choices=["bridge", "private", "vepa", "passthrough"], required=False
                ),
            },
        ),
        responses={200: NicChangeSerializer},
    )
    @action(detail=True, methods=["post"], required_action=Action.CHANGE)
    def connect(self, request, pk=None):
        """Connect a NIC to a virtual network, a host bridge, or a macvtap device of the VM's host."""
        data = _body(request)
        return self._change(
            request,
            kind=str(data.get("kind", "")),
            source=str(data.get("source", "")),
            mode=str(data.get("mode", "bridge")),
        )

    @extend_schema(
        request=inline_serializer(
            "NicReserveRequest", {"mac": serializers.CharField(), "ip": serializers.CharField()}
        ),
        responses={200: ActionResultSerializer},
    )
    @action(detail=True, methods=["post"], required_action=Action.VIEW)
    def reserve(self, request, pk=None):
        """Reserve an address for a NIC: a static lease on the virtual network it is connected to (needs
        the change permission on that network)."""
        vm = self.get_object()
        data = _body(request)
        mac, ip = str(data.get("mac", "")), str(data.get("ip", ""))
        network = services.nic_network(vm, mac, restrict(Network.objects.all(), request.user))
        if network is None:
            return Response({"detail": "This NIC is not on a virtual network you may see."}, status=404)
        if not restrict(Network.objects.filter(pk=network.pk), request.user, Action.CHANGE).exists():
            raise PermissionDenied(f"You may not change network {network.name}.")
        network = services.reserve_vm_address(request.user, vm, mac, ip, request=request)
        return _result(network, f"{ip} reserved for {vm.name}.")

    def handle_exception(self, exc):
        """Network input errors as 400 with per-field messages, objects gone as 404."""
        return _handle_network_errors(exc) or super().handle_exception(exc)
