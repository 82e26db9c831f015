package io.bizcloud.interop;

import java.util.List;

import org.apache.dubbo.common.URL;
import org.apache.dubbo.registry.Registry;
import org.apache.dubbo.registry.RegistryFactory;
import org.apache.dubbo.rpc.model.ApplicationModel;

/**
 * Lists the providers of one interface exactly as a Dubbo consumer sees them: through Dubbo's own
 * ZookeeperRegistry (Curator), its URL decoding and its consumer/provider matching (UrlUtils.isMatch).
 *
 * Usage: ListProviders ZK_HOST:PORT INTERFACE. Prints one line per provider:
 * "PROVIDER address=IP:PORT protocol=P tag=T application=A" and exits 0.
 */
public final class ListProviders {
    public static void main(String[] args) {
        String hosts = args[0];
        String iface = args[1];
        ApplicationModel app = ApplicationModel.defaultModel();
        app.getApplicationConfigManager().setApplication(
                new org.apache.dubbo.config.ApplicationConfig("bizcloud-interop-consumer"));
        URL registryUrl = URL.valueOf("zookeeper://" + hosts + "?timeout=15000").setScopeModel(app);
        Registry registry = app.getExtensionLoader(RegistryFactory.class).getAdaptiveExtension().getRegistry(registryUrl);
        URL consumer = URL.valueOf("consumer://127.0.0.1/" + iface + "?interface=" + iface
                + "&category=providers&side=consumer&check=false").setScopeModel(app);
        List<URL> found = registry.lookup(consumer);
        for (URL url : found) {
            if ("empty".equals(url.getProtocol())) {
                continue;  // Dubbo's marker for "no provider"
            }
            System.out.println("PROVIDER address=" + url.getAddress() + " protocol=" + url.getProtocol()
                    + " tag=" + url.getParameter("dubbo.tag", "") + " application=" + url.getParameter("application"));
        }
        registry.destroy();
        app.destroy();
        System.exit(0);
    }
}
